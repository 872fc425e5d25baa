//! The integration tests: one binary, one module per area. `support` starts
//! the real program and server, writes sites and archives, and compares trees.

mod support;

mod architecture;
mod browser;
mod diskette_options;
mod django_compat;
mod dump_cli;
mod faults_server;
mod fetch;
mod hardening_auth;
mod hardening_transfer;
mod instances;
mod load_archives;
mod load_hostile;
mod postgres_data;
mod registry_backends;
mod roundtrip;
mod s3_store;
mod schedules;
mod storage_changes;
mod verify;
mod web_access;
mod web_download;
mod web_recovery;
mod web_rules;
