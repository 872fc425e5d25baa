//! Writing the archive: tar entries into a gzip stream, hashed as it is written.
