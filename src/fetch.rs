//! Downloading an archive from an `http(s)` URL.
