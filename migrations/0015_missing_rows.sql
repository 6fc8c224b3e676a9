-- modulo-group schema, version 15: a member row deleted by hand holds every change of its group
-- (a join, a leave, a reap) that would reassign indices, until the row has been missing for the
-- longest lease the group's rows had at its last change. Its member, if alive, may still work its
-- index until its own deadline; a change made meanwhile gave that index to another member at once
-- (an adversarial review: 1.4 s of two epochs at once with leases of 2 s; 15.5 s in a process that
-- had never read the missing row's longer lease, which only the database knows now).
--   groups.lease_ms        the longest lease of the group's rows as its last change (or a static
--                          takeover) left them, in ms; written under the group's lock
--   groups.missing_since   when a change first found fewer member rows than the group's size (the
--                          change's clock); NULL while they add up. Cleared by the change that repairs
--   groups.missing_wait_ms how long that change found it must wait (the longest lease then), in ms
--   groups.missing_indices the indices no row held then: a change that finds another one missing
--                          (a row restored by hand, then another deleted) waits anew
-- Idempotent; apps with their own migration tool record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (15, '0015_missing_rows') ON CONFLICT DO NOTHING;
-- Nullable columns without defaults: changes of the catalog only; the backfill below writes one row
-- per group. No grants: the members' role already updates `groups` in every change.

ALTER TABLE modulo_group.groups ADD COLUMN IF NOT EXISTS lease_ms double precision;
ALTER TABLE modulo_group.groups ADD COLUMN IF NOT EXISTS missing_since timestamptz;
ALTER TABLE modulo_group.groups ADD COLUMN IF NOT EXISTS missing_wait_ms double precision;
ALTER TABLE modulo_group.groups ADD COLUMN IF NOT EXISTS missing_indices integer[];

-- The groups that run during the upgrade: the longest lease of their rows now (a row an older
-- release wrote has no lease_ms: its times), at most 2^31 - 1 ms (the longest lease a member takes).
UPDATE modulo_group.groups g
   SET lease_ms = LEAST(2147483647::float8, (
         SELECT (extract(epoch FROM max(coalesce(m.lease_ms * interval '1 millisecond', m.lease_expires_at - m.heartbeat_at))) OPERATOR(pg_catalog.*) 1000)::float8
           FROM modulo_group.members m WHERE m.group_id = g.group_id))
 WHERE g.lease_ms IS NULL;
