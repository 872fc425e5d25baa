//! Safe extraction of an untrusted archive into a private temporary directory.
