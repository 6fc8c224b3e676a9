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
-- release wrote has no lease_ms, nor one edited by hand out of 0 to 2^31 - 1 ms: its times, if
-- finite), at most 2^31 - 1 ms (the longest lease a member takes).
UPDATE modulo_group.groups g
   SET lease_ms = LEAST(2147483647::float8, (
         SELECT (extract(epoch FROM max(coalesce(
                   CASE WHEN m.lease_ms >= 0::float8 AND m.lease_ms <= 2147483647::float8 THEN m.lease_ms * interval '1 millisecond' END,
                   CASE WHEN isfinite(m.lease_expires_at) AND isfinite(m.heartbeat_at) THEN m.lease_expires_at - m.heartbeat_at END
                 ))) OPERATOR(pg_catalog.*) 1000)::float8
           FROM modulo_group.members m WHERE m.group_id = g.group_id))
 WHERE g.lease_ms IS NULL;

-- A wait recorded for indices found missing is only good while they stay missing. A row put back by
-- hand (an INSERT with an index, an index set again), or a change of a release that does not clear
-- the record (a rolling upgrade from 0014), gives an index a row again without this version's
-- change: the record goes, so that the next time that index is found missing the wait starts anew
-- (an adversarial review: a row deleted, put back, and deleted again a few seconds later was
-- repaired at once, beside its member's work, on the first incident's record). Forgetting is always
-- safe: a change that finds indices missing and no record waits a whole lease. Row triggers that
-- fire only when a row gets an index it did not have: this version's changes give indices only in
-- `reassignIndices` (movers only), and they clear the record anyway. ENABLE ALWAYS: also under
-- session_replication_role = replica (a restore, logical replication's apply).
CREATE OR REPLACE FUNCTION modulo_group.forget_missing() RETURNS trigger
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  UPDATE modulo_group.groups
     SET missing_since = NULL, missing_wait_ms = NULL, missing_indices = NULL
   WHERE group_id = NEW.group_id AND missing_since IS NOT NULL;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS forget_missing_insert ON modulo_group.members;
CREATE TRIGGER forget_missing_insert
  AFTER INSERT ON modulo_group.members
  FOR EACH ROW WHEN (NEW.idx IS NOT NULL)
  EXECUTE FUNCTION modulo_group.forget_missing();
ALTER TABLE modulo_group.members ENABLE ALWAYS TRIGGER forget_missing_insert;

DROP TRIGGER IF EXISTS forget_missing_index ON modulo_group.members;
CREATE TRIGGER forget_missing_index
  AFTER UPDATE OF idx ON modulo_group.members
  FOR EACH ROW WHEN (NEW.idx IS NOT NULL AND NEW.idx IS DISTINCT FROM OLD.idx)
  EXECUTE FUNCTION modulo_group.forget_missing();
ALTER TABLE modulo_group.members ENABLE ALWAYS TRIGGER forget_missing_index;
