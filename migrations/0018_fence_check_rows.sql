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
-- A row with `slots` is checked in one statement: every named slot's holder and generation. A row
-- with the older `slot` column (one slot) is checked as before. The leases are read LAST, after every
-- other check of the row, on `clock_timestamp()`: the row's member's, and every member whose fenced
-- block the transaction recorded (`modulo_group.fenced`, a transaction-local setting each fence
-- appends its target to). A check's other work costs what the session's settings make it cost (an
-- adversarial review of this migration's first form, which read the lease first: a fenced body's
-- `SET LOCAL enable_indexscan = off` and the like turned the slots' join into seconds of nested loop
-- after the lease read, and JIT compiled it there: the COMMIT landed past the lease); read last, the
-- lease of every fenced member of the transaction is read after the slowest check queued before it,
-- so the COMMIT's last check reads them all at its end. `jit` is off for the function (no compile at
-- COMMIT) and the planner's scan and join methods on: a body's `SET LOCAL` of them does not make the
-- COMMIT slow (its locks, which a hand-over of the slots waits for, held that long). SQLSTATEs as in 0017; a fenced member other than the row's whose lease ran out is named.
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
  SET jit = off
  SET enable_seqscan = on
  SET enable_indexscan = on
  SET enable_bitmapscan = on
  SET enable_nestloop = on
  SET enable_hashjoin = on
  SET enable_mergejoin = on
AS $$
DECLARE
  current_epoch bigint;
  current_idx   integer;
  left_ms       bigint;
  slot_holder   uuid;
  slot_gen      bigint;
  bad_slot      integer;
  wanted_gen    bigint;
  slot_found    boolean;
  late_member   uuid;
  late_group    text;
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
  SELECT m.idx INTO current_idx
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
  -- Last, the leases on the database clock now: this row's member's, and those of every member the
  -- transaction's fences recorded; the first one that ran out, if any (this row's first).
  SELECT m.member_id, m.group_id, (extract(epoch FROM m.lease_expires_at - clock_timestamp()) * 1000)::bigint
    INTO late_member, late_group, left_ms
    FROM modulo_group.members m
   WHERE ((m.member_id = NEW.member_id AND m.group_id = NEW.group_id)
          OR (m.member_id, m.group_id) IN (
               SELECT (e.value ->> 'm')::uuid, e.value ->> 'g'
                 FROM jsonb_array_elements(coalesce(NULLIF(current_setting('modulo_group.fenced', true), ''), '[]')::jsonb) e))
     AND NOT (m.lease_expires_at > clock_timestamp())
   ORDER BY (m.member_id = NEW.member_id AND m.group_id = NEW.group_id) DESC
   LIMIT 1;
  IF FOUND THEN
    IF late_member = NEW.member_id AND late_group = NEW.group_id THEN
      RAISE EXCEPTION USING ERRCODE = 'MGF01',
        MESSAGE = format('modulo_group fence: the lease expired %s ms before COMMIT on the database clock', -left_ms);
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'MGF01',
      MESSAGE = format('modulo_group fence: the lease of member %s of group %s, fenced in this transaction, expired %s ms before COMMIT on the database clock',
                       late_member, late_group, -left_ms);
  END IF;
  RETURN NULL;
END
$$;
