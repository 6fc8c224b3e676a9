-- modulo-group schema, version 18: the commit-time check of fenced transactions costs the same for
-- every row, and a slots-mode fence queues one row instead of one per slot. Up to version 17 each
-- row's check began with `DELETE FROM fence_checks WHERE tx = NEW.tx`: an index scan over every row
-- the transaction had inserted (deleted ones included: the deleting transaction is still open), so
-- a COMMIT cost O(rows²), and a slots-mode fence inserted a row per slot. In an app's transaction
-- that ran a fenced write and then a fenced block of 3,000 slots, the write's check ran first and the
-- COMMIT landed 0.9-1.5 s past its lease (an adversarial review); with 16,384 slots, 92 s.
--   fence_checks.id          the row's identity: its check deletes that row only (a unique index)
--   fence_checks.slots       slots mode: the slots the fence named (NULL otherwise)
--   fence_checks.generations their generations, in the same order
-- A row with `slots` is checked in one statement: the lease, then every named slot's holder and
-- generation. A row with the older `slot` column (one slot) is checked as before. SQLSTATEs and
-- messages as in 0017.
-- Idempotent; apps with their own migration tool record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (18, '0018_fence_check_rows') ON CONFLICT DO NOTHING;
-- No grants: an identity column needs no privilege on its sequence; the app's role already has
-- SELECT, INSERT, DELETE on `fence_checks`. The table is empty outside open transactions (each row
-- is deleted by its own check), so adding the identity column rewrites nothing to speak of.

ALTER TABLE modulo_group.fence_checks ADD COLUMN IF NOT EXISTS slots integer[];
ALTER TABLE modulo_group.fence_checks ADD COLUMN IF NOT EXISTS generations bigint[];
ALTER TABLE modulo_group.fence_checks ADD COLUMN IF NOT EXISTS id bigint GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX IF NOT EXISTS fence_checks_id ON modulo_group.fence_checks (id);

CREATE OR REPLACE FUNCTION modulo_group.fence_check_at_commit() RETURNS trigger
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  current_epoch bigint;
  current_idx   integer;
  live          boolean;
  left_ms       bigint;
  slot_holder   uuid;
  slot_gen      bigint;
  bad_slot      integer;
  wanted_gen    bigint;
  slot_found    boolean;
BEGIN
  DELETE FROM modulo_group.fence_checks WHERE id = NEW.id;
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_cursors c WHERE c.is_holdable AND c.creation_time >= pg_catalog.now()) THEN
    RAISE EXCEPTION USING ERRCODE = 'MGF03',
      MESSAGE = 'modulo_group fence: a cursor WITH HOLD was declared in this transaction; PostgreSQL runs its query at COMMIT, after this check, so the transaction could commit after the lease ended. Close it before COMMIT, or declare it without HOLD';
  END IF;
  IF NEW.slot IS NULL AND NEW.slots IS NULL THEN
    SELECT g.epoch INTO current_epoch FROM modulo_group.groups g WHERE g.group_id = NEW.group_id;
    IF NOT FOUND THEN
      RAISE EXCEPTION USING ERRCODE = 'MGF01', MESSAGE = 'modulo_group fence: the group no longer exists at COMMIT';
    END IF;
    IF current_epoch IS DISTINCT FROM NEW.epoch THEN
      RAISE EXCEPTION USING ERRCODE = 'MGF01',
        MESSAGE = format('modulo_group fence: the group has moved on to epoch %s at COMMIT', current_epoch);
    END IF;
  END IF;
  SELECT m.idx, m.lease_expires_at > clock_timestamp(),
         (extract(epoch FROM m.lease_expires_at - clock_timestamp()) * 1000)::bigint
    INTO current_idx, live, left_ms
    FROM modulo_group.members m
   WHERE m.member_id = NEW.member_id AND m.group_id = NEW.group_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = 'MGF01',
      MESSAGE = 'modulo_group fence: this member''s row is gone at COMMIT (it left or was reaped)';
  END IF;
  IF NEW.slot IS NULL AND NEW.slots IS NULL AND current_idx IS DISTINCT FROM NEW.idx THEN
    RAISE EXCEPTION USING ERRCODE = 'MGF01',
      MESSAGE = format('modulo_group fence: this member has index %s at COMMIT, not %s', current_idx, NEW.idx);
  END IF;
  IF NOT live THEN
    RAISE EXCEPTION USING ERRCODE = 'MGF01',
      MESSAGE = format('modulo_group fence: the lease expired %s ms before COMMIT on the database clock', -left_ms);
  END IF;
  IF NEW.slots IS NOT NULL THEN
    -- Every named slot at once; the first one that fails, if any (a generations array shorter than
    -- the slots gives NULL generations: those fail too).
    SELECT r.slot, s.holder, s.generation, r.generation, s.slot IS NOT NULL
      INTO bad_slot, slot_holder, slot_gen, wanted_gen, slot_found
      FROM ROWS FROM (pg_catalog.unnest(NEW.slots), pg_catalog.unnest(NEW.generations)) AS r(slot, generation)
      LEFT JOIN modulo_group.slots s ON s.group_id = NEW.group_id AND s.slot = r.slot
     WHERE s.slot IS NULL OR r.slot IS NULL
        OR s.holder IS DISTINCT FROM NEW.member_id OR s.generation IS DISTINCT FROM r.generation
     ORDER BY r.slot
     LIMIT 1;
  ELSIF NEW.slot IS NOT NULL THEN
    SELECT NEW.slot, s.holder, s.generation, NEW.generation, s.slot IS NOT NULL
      INTO bad_slot, slot_holder, slot_gen, wanted_gen, slot_found
      FROM (SELECT 1) one
      LEFT JOIN modulo_group.slots s ON s.group_id = NEW.group_id AND s.slot = NEW.slot
     WHERE s.slot IS NULL OR s.holder IS DISTINCT FROM NEW.member_id OR s.generation IS DISTINCT FROM NEW.generation;
  END IF;
  IF (NEW.slots IS NOT NULL OR NEW.slot IS NOT NULL) AND FOUND THEN
    IF NOT slot_found THEN
      RAISE EXCEPTION USING ERRCODE = 'MGF01',
        MESSAGE = format('modulo_group fence: the group has no slot %s at COMMIT', bad_slot);
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'MGF01',
      MESSAGE = format('modulo_group fence: slot %s is at generation %s at COMMIT%s, not %s of this member',
                       bad_slot, slot_gen,
                       CASE WHEN slot_holder IS DISTINCT FROM NEW.member_id THEN ' with another holder' ELSE '' END,
                       wanted_gen);
  END IF;
  RETURN NULL;
END
$$;
