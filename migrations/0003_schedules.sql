-- Schedules that create dumps, the one run of each schedule per due time, and
-- the verifications of stored archives. Timestamps are RFC 3339 UTC strings.

CREATE TABLE schedules (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- A standard 5-field cron expression, evaluated in `timezone`.
    cron          TEXT    NOT NULL CHECK (length(cron) BETWEEN 1 AND 200),
    with_data     INTEGER NOT NULL CHECK (with_data IN (0, 1)),
    with_storages INTEGER NOT NULL CHECK (with_storages IN (0, 1)),
    -- An IANA time zone name (`Europe/Paris`, `UTC`).
    timezone      TEXT    NOT NULL DEFAULT 'UTC' CHECK (length(timezone) BETWEEN 1 AND 64),
    enabled       INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at    TEXT    NOT NULL,
    -- Due times before this are never run: set at creation and when the
    -- schedule is enabled again, so enabling does not run a missed time.
    active_since  TEXT    NOT NULL,
    -- Rule 1 holds for scheduled dumps too.
    CHECK (with_data = 1 OR with_storages = 1)
);

-- One row per schedule and due time, inserted in the transaction that
-- creates its dump: the unique key makes several instances on one registry
-- agree on who creates it. No foreign key to `schedules`: a removed
-- schedule's runs still mark its dumps as scheduled.
CREATE TABLE schedule_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule_id INTEGER NOT NULL,
    due_at      TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    dump_id     INTEGER REFERENCES dumps (id) ON DELETE SET NULL,
    UNIQUE (schedule_id, due_at)
);

CREATE INDEX schedule_runs_by_dump ON schedule_runs (dump_id);

-- Re-reads of stored archives. Kept apart from `dumps`, whose record does
-- not change once finished (rule 4); the latest row of a dump is its state.
CREATE TABLE verifications (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    dump_id  INTEGER NOT NULL REFERENCES dumps (id) ON DELETE CASCADE,
    at       TEXT    NOT NULL,
    ok       INTEGER NOT NULL CHECK (ok IN (0, 1)),
    -- What failed; present exactly when the archive is not good.
    error    TEXT,
    CHECK ((ok = 1) = (error IS NULL))
);

CREATE INDEX verifications_by_dump ON verifications (dump_id, id);
