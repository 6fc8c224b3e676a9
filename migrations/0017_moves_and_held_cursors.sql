-- modulo-group schema, version 17 (adversarial reviews of 0016): (1) the row trigger of 0016 also
-- forgets the record of what a change found missing (migration 0015) when a member row's group
-- changes: a row moved to another group by hand and back, then away again, was waited out from the
-- first move's record (0.5 s of two holders of a slot; in modulo mode a join went through at once);
-- (2) the commit-time check of fenced transactions refuses a cursor WITH HOLD declared in the
-- transaction. PostgreSQL runs such a cursor's query to its end at COMMIT, after every deferred
-- trigger, this check included: a slow one (a function that waits, a large sort) committed a fenced
-- transaction past its lease (0.5 s). The fence's last statement refuses one its body declared, but a
-- statement sent after that one on the same connection (a fiber the body forked and left running) was
-- not seen. Checked here, at COMMIT, no statement can follow. SQLSTATE MGF03 (`Fenced` reports it as
-- FenceBroken); the same function as 0007's otherwise. Nested in an app's transaction, the app's own
-- WITH HOLD cursors of that transaction are refused at its COMMIT too: they would run after the check
-- as well. An older version's fenced transactions that declare one fail at COMMIT from then on.
-- Idempotent; apps with their own migration tool record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (17, '0017_moves_and_held_cursors') ON CONFLICT DO NOTHING;
-- No grants: the members' role already updates `groups`, and the check runs as it does.

DROP TRIGGER IF EXISTS forget_missing_member ON modulo_group.members;
CREATE TRIGGER forget_missing_member
  AFTER UPDATE OF member_id, group_id ON modulo_group.members
  FOR EACH ROW WHEN (NEW.member_id IS DISTINCT FROM OLD.member_id OR NEW.group_id IS DISTINCT FROM OLD.group_id)
  EXECUTE FUNCTION modulo_group.forget_missing();
ALTER TABLE modulo_group.members ENABLE ALWAYS TRIGGER forget_missing_member;

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
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_cursors c WHERE c.is_holdable AND c.creation_time >= pg_catalog.now()) THEN
    RAISE EXCEPTION USING ERRCODE = 'MGF03',
      MESSAGE = 'modulo_group fence: a cursor WITH HOLD was declared in this transaction; PostgreSQL runs its query at COMMIT, after this check, so the transaction could commit after the lease ended. Close it before COMMIT, or declare it without HOLD';
  END IF;
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
