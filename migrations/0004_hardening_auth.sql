-- Login throttling reserves each attempt before the password is checked and
-- forgets failures over time; the per-user session generation ends the other
-- sessions of a user whose password or access changed; the server keeps its
-- own secrets (the key signing the login form's token).

-- The old counters never decayed: they are dropped, not carried over.
DROP TABLE login_failures;

-- `key` is `user:<name>` or `ip:<addr>`. `attempts` decays by one every fixed
-- period counted from `decay_from`; `locked_until` refuses attempts until then.
CREATE TABLE login_throttle (
    key          TEXT    PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 700),
    attempts     INTEGER NOT NULL CHECK (attempts >= 0),
    decay_from   TEXT    NOT NULL,
    locked_until TEXT
);

CREATE INDEX login_throttle_by_age ON login_throttle (decay_from);

-- Raised when a password changes, or an account is deactivated or loses staff
-- rights; a session remembers the generation it was opened with.
ALTER TABLE users ADD COLUMN session_generation INTEGER NOT NULL DEFAULT 0
    CHECK (session_generation >= 0);

CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL CHECK (length(value) >= 32)
);
