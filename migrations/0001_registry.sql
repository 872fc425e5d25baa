-- Registry of dumps, staff users, API keys and the action history.
-- Timestamps are RFC 3339 UTC strings; booleans are 0/1 integers.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 150),
    password_hash TEXT    NOT NULL,
    is_staff      INTEGER NOT NULL DEFAULT 1 CHECK (is_staff IN (0, 1)),
    is_superuser  INTEGER NOT NULL DEFAULT 0 CHECK (is_superuser IN (0, 1)),
    is_active     INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at    TEXT    NOT NULL,
    last_login_at TEXT
);

-- Only a hash of each key is kept; the key itself is shown once at creation.
CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    key_hash     TEXT    NOT NULL UNIQUE,
    prefix       TEXT    NOT NULL,
    created_by   INTEGER REFERENCES users (id),
    created_at   TEXT    NOT NULL,
    deprecated   INTEGER NOT NULL DEFAULT 0 CHECK (deprecated IN (0, 1)),
    last_used_at TEXT
);

CREATE TRIGGER api_keys_deprecation_is_final
BEFORE UPDATE OF deprecated ON api_keys
WHEN OLD.deprecated = 1 AND NEW.deprecated = 0
BEGIN
    SELECT RAISE(ABORT, 'a deprecated API key cannot be reactivated');
END;

CREATE TABLE dumps (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at     TEXT    NOT NULL,
    processed_at   TEXT,
    status         TEXT    NOT NULL DEFAULT 'created'
                   CHECK (status IN ('created', 'pending', 'processed', 'failed')),
    with_data      INTEGER NOT NULL CHECK (with_data IN (0, 1)),
    with_storages  INTEGER NOT NULL CHECK (with_storages IN (0, 1)),
    deprecated     INTEGER NOT NULL DEFAULT 0 CHECK (deprecated IN (0, 1)),
    filename       TEXT,
    size           INTEGER CHECK (size IS NULL OR size >= 0),
    checksum       TEXT    CHECK (checksum IS NULL OR (length(checksum) = 128 AND checksum NOT GLOB '*[^0-9a-f]*')),
    purged_at      TEXT,
    logs           TEXT    NOT NULL DEFAULT '',
    error          TEXT,
    progress_bytes INTEGER NOT NULL DEFAULT 0,
    progress_files INTEGER NOT NULL DEFAULT 0,
    created_by     INTEGER REFERENCES users (id),
    -- Rule 1: an archive holds data, storages or both, never neither.
    CHECK (with_data = 1 OR with_storages = 1),
    -- A processed dump always has its file, size and checksum.
    CHECK (status <> 'processed'
           OR (filename IS NOT NULL AND size IS NOT NULL AND checksum IS NOT NULL AND processed_at IS NOT NULL)),
    -- Only the files of processed dumps are ever purged.
    CHECK (purged_at IS NULL OR (status = 'processed' AND deprecated = 1))
);

-- Rule 2: at most one available (processed, not deprecated) dump per option set.
CREATE UNIQUE INDEX dumps_one_available_per_option_set
    ON dumps (with_data, with_storages)
    WHERE status = 'processed' AND deprecated = 0;

-- Two dumps never share a file, so purging one cannot remove another's archive.
CREATE UNIQUE INDEX dumps_filename_unique ON dumps (filename) WHERE filename IS NOT NULL;

CREATE INDEX dumps_by_status ON dumps (status, id);

-- Rule 3: deprecation is irreversible, whatever path the update comes from.
CREATE TRIGGER dumps_deprecation_is_final
BEFORE UPDATE OF deprecated ON dumps
WHEN OLD.deprecated = 1 AND NEW.deprecated = 0
BEGIN
    SELECT RAISE(ABORT, 'a deprecated dump cannot be un-deprecated');
END;

-- Rule 4: what a dump is never changes once created.
CREATE TRIGGER dumps_identity_is_immutable
BEFORE UPDATE ON dumps
WHEN NEW.id IS NOT OLD.id
  OR NEW.created_at IS NOT OLD.created_at
  OR NEW.with_data IS NOT OLD.with_data
  OR NEW.with_storages IS NOT OLD.with_storages
  OR NEW.created_by IS NOT OLD.created_by
BEGIN
    SELECT RAISE(ABORT, 'a dump''s identity cannot change');
END;

-- Rule 4: the job fills its fields once; a finished dump keeps them.
CREATE TRIGGER dumps_outcome_is_immutable
BEFORE UPDATE ON dumps
WHEN OLD.status IN ('processed', 'failed') AND (
       NEW.status IS NOT OLD.status
    OR NEW.processed_at IS NOT OLD.processed_at
    OR NEW.filename IS NOT OLD.filename
    OR NEW.size IS NOT OLD.size
    OR NEW.checksum IS NOT OLD.checksum
    OR NEW.logs IS NOT OLD.logs
    OR NEW.error IS NOT OLD.error
    OR NEW.progress_bytes IS NOT OLD.progress_bytes
    OR NEW.progress_files IS NOT OLD.progress_files)
BEGIN
    SELECT RAISE(ABORT, 'a finished dump cannot change');
END;

-- Status only moves forward: created -> pending -> processed | failed, or created -> failed.
CREATE TRIGGER dumps_status_moves_forward
BEFORE UPDATE OF status ON dumps
WHEN NEW.status IS NOT OLD.status AND NOT (
       (OLD.status = 'created' AND NEW.status IN ('pending', 'failed'))
    OR (OLD.status = 'pending' AND NEW.status IN ('processed', 'failed')))
BEGIN
    SELECT RAISE(ABORT, 'invalid dump status transition');
END;

-- A purge is recorded once.
CREATE TRIGGER dumps_purge_is_final
BEFORE UPDATE OF purged_at ON dumps
WHEN OLD.purged_at IS NOT NULL AND NEW.purged_at IS NOT OLD.purged_at
BEGIN
    SELECT RAISE(ABORT, 'a purge cannot be undone');
END;

-- Who did what, and when. Dump ids are kept without a foreign key: the history
-- outlives a hard-deleted dump.
CREATE TABLE actions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT    NOT NULL,
    user_id    INTEGER REFERENCES users (id),
    api_key_id INTEGER REFERENCES api_keys (id),
    verb       TEXT    NOT NULL,
    dump_id    INTEGER,
    detail     TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX actions_by_id ON actions (id DESC);

-- Failed login attempts, per username and per client address (`key` is
-- `user:<name>` or `ip:<addr>`), for throttling with back-off.
CREATE TABLE login_failures (
    key          TEXT    PRIMARY KEY,
    failures     INTEGER NOT NULL DEFAULT 0,
    locked_until TEXT
);
