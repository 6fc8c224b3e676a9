-- modulo-group schema, version 7: slots mode (docs/slots.md). A group created in slots mode has a
-- fixed number of slots S (1..16384); an item belongs to slot `id mod S`; each slot has an owner
-- (the target, written only by membership changes), a holder (who may work it now) and a generation
-- (bumped whenever the holder changes: the slot's fencing token). Groups without a slot count
-- (every group before this version) are in modulo mode and behave exactly as before.
-- Idempotent; apps with their own migration tool record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (7, '0007_slots') ON CONFLICT DO NOTHING;
-- The app's role needs (besides the grants of the earlier versions):
--   GRANT SELECT, INSERT, UPDATE ON modulo_group.slots TO app;

-- The slot count, fixed when the group is created (its first join); NULL: modulo mode.
ALTER TABLE modulo_group.groups ADD COLUMN IF NOT EXISTS slots integer
  CHECK (slots IS NULL OR slots BETWEEN 1 AND 16384);

-- One row per slot of a slots-mode group, created with the group (S rows).
CREATE TABLE IF NOT EXISTS modulo_group.slots (
  group_id   text        NOT NULL REFERENCES modulo_group.groups (group_id) ON DELETE CASCADE,
  slot       integer     NOT NULL CHECK (slot >= 0 AND slot < 16384),
  -- The target: written by membership changes only.
  owner      uuid,
  -- Who may work the slot now: changed only by its holder's own release (after its work stopped), or
  -- by the change that deletes the holder's row (a leave after its work stopped, a reap after its
  -- lease expired). No foreign key: a holder id may name a row deleted in the same transaction.
  holder     uuid,
  -- Bumped whenever holder changes (and by a member's retake): with the slot, the fencing token.
  generation bigint      NOT NULL DEFAULT 0 CHECK (generation >= 0),
  changed_at timestamptz NOT NULL,
  PRIMARY KEY (group_id, slot)
);
-- Makes a generation bump a key update: it needs FOR UPDATE, which waits for a fenced transaction's
-- FOR KEY SHARE on the row, while a change that writes only `owner` does not.
CREATE UNIQUE INDEX IF NOT EXISTS slots_generation ON modulo_group.slots (group_id, slot, generation);
CREATE INDEX IF NOT EXISTS slots_holder ON modulo_group.slots (group_id, holder);
CREATE INDEX IF NOT EXISTS slots_owner ON modulo_group.slots (group_id, owner);

-- The commit-time check learns slots: a row with a slot checks the member's lease and that slot's
-- holder and generation (not the epoch nor the index: in slots mode the epoch is no barrier).
ALTER TABLE modulo_group.fence_checks ADD COLUMN IF NOT EXISTS slot integer;
ALTER TABLE modulo_group.fence_checks ADD COLUMN IF NOT EXISTS generation bigint;
ALTER TABLE modulo_group.fence_checks ALTER COLUMN epoch DROP NOT NULL;
ALTER TABLE modulo_group.fence_checks ALTER COLUMN idx DROP NOT NULL;

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
BEGIN
  DELETE FROM modulo_group.fence_checks WHERE tx = NEW.tx;
  IF NEW.slot IS NULL THEN
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
  IF NEW.slot IS NULL AND current_idx IS DISTINCT FROM NEW.idx THEN
    RAISE EXCEPTION USING ERRCODE = 'MGF01',
      MESSAGE = format('modulo_group fence: this member has index %s at COMMIT, not %s', current_idx, NEW.idx);
  END IF;
  IF NOT live THEN
    RAISE EXCEPTION USING ERRCODE = 'MGF01',
      MESSAGE = format('modulo_group fence: the lease expired %s ms before COMMIT on the database clock', -left_ms);
  END IF;
  IF NEW.slot IS NOT NULL THEN
    SELECT s.holder, s.generation INTO slot_holder, slot_gen
      FROM modulo_group.slots s
     WHERE s.group_id = NEW.group_id AND s.slot = NEW.slot;
    IF NOT FOUND THEN
      RAISE EXCEPTION USING ERRCODE = 'MGF01',
        MESSAGE = format('modulo_group fence: the group has no slot %s at COMMIT', NEW.slot);
    END IF;
    IF slot_holder IS DISTINCT FROM NEW.member_id OR slot_gen IS DISTINCT FROM NEW.generation THEN
      RAISE EXCEPTION USING ERRCODE = 'MGF01',
        MESSAGE = format('modulo_group fence: slot %s is at generation %s at COMMIT%s, not %s of this member',
                         NEW.slot, slot_gen,
                         CASE WHEN slot_holder IS DISTINCT FROM NEW.member_id THEN ' with another holder' ELSE '' END,
                         NEW.generation);
    END IF;
  END IF;
  RETURN NULL;
END
$$;
