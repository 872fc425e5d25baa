//! What a hostile peer or a badly timed click must not achieve: the loader
//! against a hostile HTTP server on the loopback interface (endless
//! non-archives, oversized bodies, redirects to other schemes, server-chosen
//! file names); RFC 9110 ranges on the downloads; security headers on error
//! responses; page numbers out of range; dumps deprecated before they ran.

mod hostile;
mod jobs;
mod loader;
mod web;
