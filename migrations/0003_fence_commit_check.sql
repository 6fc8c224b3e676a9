-- modulo-group schema, version 3: a fenced transaction is checked once more AT COMMIT, on the
-- database clock, by a deferred constraint trigger. Idempotent; apps with their own migration tool
-- record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (3, '0003_fence_commit_check') ON CONFLICT DO NOTHING;
-- The app's role needs: GRANT SELECT, INSERT, DELETE ON modulo_group.fence_checks TO app;

-- A fenced transaction inserts a row here (after its checks, and again after the app's statements);
-- the row only queues the commit-time check below, which deletes it. No row outlives its
-- transaction, so the table is empty to everyone else and needs no WAL: UNLOGGED.
CREATE UNLOGGED TABLE IF NOT EXISTS modulo_group.fence_checks (
  member_id uuid    NOT NULL,
  group_id  text    NOT NULL,
  epoch     bigint  NOT NULL,
  idx       integer NOT NULL,
  -- The top-level transaction that inserted it: the trigger deletes only its own transaction's rows.
  tx        bigint  NOT NULL DEFAULT txid_current()
);
CREATE INDEX IF NOT EXISTS fence_checks_tx ON modulo_group.fence_checks (tx);

-- Runs at COMMIT (deferred): the transaction commits only if, at that moment, the group is still at
-- the row's epoch, the member's row still exists with the row's index, and its lease has not
-- expired on the database clock (clock_timestamp(), read now, not at the transaction's start).
-- Otherwise it raises SQLSTATE MGF01 and the COMMIT fails: nothing of the transaction commits.
CREATE OR REPLACE FUNCTION modulo_group.fence_check_at_commit() RETURNS trigger
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  current_epoch bigint;
  current_idx   integer;
  live          boolean;
  left_ms       bigint;
BEGIN
  DELETE FROM modulo_group.fence_checks WHERE tx = NEW.tx;
  SELECT g.epoch INTO current_epoch FROM modulo_group.groups g WHERE g.group_id = NEW.group_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = 'MGF01', MESSAGE = 'modulo_group fence: the group no longer exists at COMMIT';
  END IF;
  IF current_epoch <> NEW.epoch THEN
    RAISE EXCEPTION USING ERRCODE = 'MGF01',
      MESSAGE = format('modulo_group fence: the group has moved on to epoch %s at COMMIT', current_epoch);
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
  IF current_idx IS DISTINCT FROM NEW.idx THEN
    RAISE EXCEPTION USING ERRCODE = 'MGF01',
      MESSAGE = format('modulo_group fence: this member has index %s at COMMIT, not %s', current_idx, NEW.idx);
  END IF;
  IF NOT live THEN
    RAISE EXCEPTION USING ERRCODE = 'MGF01',
      MESSAGE = format('modulo_group fence: the lease expired %s ms before COMMIT on the database clock', -left_ms);
  END IF;
  RETURN NULL;
END
$$;

-- An app that ran SET CONSTRAINTS ALL IMMEDIATE earlier in the transaction would make the check
-- run when the row is inserted instead of at COMMIT: each insert puts it back to DEFERRED.
CREATE OR REPLACE FUNCTION modulo_group.fence_check_defer() RETURNS trigger
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  SET CONSTRAINTS modulo_group.fence_check_at_commit DEFERRED;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS fence_check_at_commit ON modulo_group.fence_checks;
CREATE CONSTRAINT TRIGGER fence_check_at_commit
  AFTER INSERT ON modulo_group.fence_checks
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION modulo_group.fence_check_at_commit();

DROP TRIGGER IF EXISTS fence_check_defer ON modulo_group.fence_checks;
CREATE TRIGGER fence_check_defer
  BEFORE INSERT ON modulo_group.fence_checks
  FOR EACH ROW EXECUTE FUNCTION modulo_group.fence_check_defer();
