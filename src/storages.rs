//! Storage directories: validation, walking with excludes, the symlink policy.
