-- modulo-group schema, version 14: each member row records the lease its member runs with
-- (`lease_ms`, written by its join and each renewal). Members of one group may run with different
-- leases, and what a member waits out for the others (after a step of the database clock, before it
-- reaps or rejoins; before the group is repaired after a row deleted by hand) is the longest lease of
-- the group's live rows. Read from a row's times (`lease_expires_at - heartbeat_at`), a lease set far
-- ahead by hand on a dead member's row counted as a member's lease of a century (an adversarial
-- review: reaping held off for 24 days). A row an older release wrote has none; its times stand in.
-- Idempotent; apps with their own migration tool record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (14, '0014_member_lease') ON CONFLICT DO NOTHING;
-- A nullable column without a default: a change of the catalog only (the table's ACCESS EXCLUSIVE
-- lock for a moment); no index (renewals stay HOT updates, migration 0009); no grants.

ALTER TABLE modulo_group.members ADD COLUMN IF NOT EXISTS lease_ms double precision;
