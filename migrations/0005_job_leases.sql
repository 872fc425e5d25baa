-- Job leases: several processes share one registry. A running (`pending`)
-- dump names the instance running it and until when; the instance renews
-- it while the job runs, and another instance ends a dump whose lease ran
-- out. A pending dump without a lease (left by an older version) counts as
-- expired.
ALTER TABLE dumps ADD COLUMN lease_owner TEXT
    CHECK (lease_owner IS NULL OR length(lease_owner) BETWEEN 1 AND 100);
ALTER TABLE dumps ADD COLUMN lease_until TEXT;

CREATE INDEX dumps_by_lease ON dumps (status, lease_until);
