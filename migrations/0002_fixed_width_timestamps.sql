-- Timestamps become fixed-width: RFC 3339 UTC with exactly six fractional
-- digits (2025-02-03T17:53:09.000000Z), so that text order is time order.
-- Rows written before had as many digits as needed, or none.

-- The rules that forbid changing these columns step aside for the conversion
-- and come back unchanged.
DROP TRIGGER dumps_identity_is_immutable;
DROP TRIGGER dumps_outcome_is_immutable;
DROP TRIGGER dumps_purge_is_final;

UPDATE users SET created_at = CASE
        WHEN substr(created_at, 20, 1) = '.' THEN
            substr(created_at, 1, 19) || '.' || substr(substr(created_at, 21, length(created_at) - 21) || '000000', 1, 6) || 'Z'
        ELSE substr(created_at, 1, 19) || '.000000Z'
    END
WHERE created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z' AND length(created_at) <> 27;

UPDATE users SET last_login_at = CASE
        WHEN substr(last_login_at, 20, 1) = '.' THEN
            substr(last_login_at, 1, 19) || '.' || substr(substr(last_login_at, 21, length(last_login_at) - 21) || '000000', 1, 6) || 'Z'
        ELSE substr(last_login_at, 1, 19) || '.000000Z'
    END
WHERE last_login_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z' AND length(last_login_at) <> 27;

UPDATE api_keys SET created_at = CASE
        WHEN substr(created_at, 20, 1) = '.' THEN
            substr(created_at, 1, 19) || '.' || substr(substr(created_at, 21, length(created_at) - 21) || '000000', 1, 6) || 'Z'
        ELSE substr(created_at, 1, 19) || '.000000Z'
    END
WHERE created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z' AND length(created_at) <> 27;

UPDATE api_keys SET last_used_at = CASE
        WHEN substr(last_used_at, 20, 1) = '.' THEN
            substr(last_used_at, 1, 19) || '.' || substr(substr(last_used_at, 21, length(last_used_at) - 21) || '000000', 1, 6) || 'Z'
        ELSE substr(last_used_at, 1, 19) || '.000000Z'
    END
WHERE last_used_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z' AND length(last_used_at) <> 27;

UPDATE dumps SET created_at = CASE
        WHEN substr(created_at, 20, 1) = '.' THEN
            substr(created_at, 1, 19) || '.' || substr(substr(created_at, 21, length(created_at) - 21) || '000000', 1, 6) || 'Z'
        ELSE substr(created_at, 1, 19) || '.000000Z'
    END
WHERE created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z' AND length(created_at) <> 27;

UPDATE dumps SET processed_at = CASE
        WHEN substr(processed_at, 20, 1) = '.' THEN
            substr(processed_at, 1, 19) || '.' || substr(substr(processed_at, 21, length(processed_at) - 21) || '000000', 1, 6) || 'Z'
        ELSE substr(processed_at, 1, 19) || '.000000Z'
    END
WHERE processed_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z' AND length(processed_at) <> 27;

UPDATE dumps SET purged_at = CASE
        WHEN substr(purged_at, 20, 1) = '.' THEN
            substr(purged_at, 1, 19) || '.' || substr(substr(purged_at, 21, length(purged_at) - 21) || '000000', 1, 6) || 'Z'
        ELSE substr(purged_at, 1, 19) || '.000000Z'
    END
WHERE purged_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z' AND length(purged_at) <> 27;

UPDATE actions SET at = CASE
        WHEN substr(at, 20, 1) = '.' THEN
            substr(at, 1, 19) || '.' || substr(substr(at, 21, length(at) - 21) || '000000', 1, 6) || 'Z'
        ELSE substr(at, 1, 19) || '.000000Z'
    END
WHERE at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z' AND length(at) <> 27;

UPDATE login_failures SET locked_until = CASE
        WHEN substr(locked_until, 20, 1) = '.' THEN
            substr(locked_until, 1, 19) || '.' || substr(substr(locked_until, 21, length(locked_until) - 21) || '000000', 1, 6) || 'Z'
        ELSE substr(locked_until, 1, 19) || '.000000Z'
    END
WHERE locked_until GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z' AND length(locked_until) <> 27;

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

CREATE TRIGGER dumps_purge_is_final
BEFORE UPDATE OF purged_at ON dumps
WHEN OLD.purged_at IS NOT NULL AND NEW.purged_at IS NOT OLD.purged_at
BEGIN
    SELECT RAISE(ABORT, 'a purge cannot be undone');
END;
