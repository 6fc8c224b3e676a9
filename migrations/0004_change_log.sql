-- modulo-group schema, version 4: a change log, one row per epoch change, for the dashboard
-- (`modulo-group ui`) and post-mortems. Idempotent; apps with their own migration tool record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (4, '0004_change_log') ON CONFLICT DO NOTHING;
--
-- Written by `modulo_group.log_change`, which every change (join, leave, reap) calls under the group
-- lock after bumping the epoch, in the same transaction: the row commits with the change or not at
-- all. The log is for people: nothing in the protocol reads it.
--
-- Retention, per group, trimmed by that group's own changes (so the trim never touches another
-- group's rows and never waits): rows older than `modulo_group.change_log_retention` (an interval,
-- default 24 hours) and all but the newest `modulo_group.change_log_max_rows` (default 1000) go.
-- Set them like any setting, for the role the members use or for the database, e.g.
--   ALTER ROLE app SET modulo_group.change_log_retention = '2 hours';
--   ALTER DATABASE my_database SET modulo_group.change_log_max_rows = '200';
-- A value that does not parse falls back to the default; max_rows 0 keeps no rows.

CREATE TABLE IF NOT EXISTS modulo_group.change_log (
  id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  group_id    text        NOT NULL REFERENCES modulo_group.groups (group_id) ON DELETE CASCADE,
  epoch       bigint      NOT NULL,
  size        integer     NOT NULL,
  incarnation bigint      NOT NULL,
  changed_at  timestamptz NOT NULL,
  -- 'join', 'leave', 'reap' (members whose lease ran out were removed: a crash, a freeze or a
  -- fence), 'repair' (rows edited by hand were put right).
  cause       text        NOT NULL CHECK (cause IN ('join', 'leave', 'reap', 'repair')),
  -- The member that joined or left (null for reap and repair).
  subject     uuid,
  -- Every member after the change, by index: [{member_id, name, host, pid, index}].
  assignment  jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS change_log_group_time ON modulo_group.change_log (group_id, changed_at);
CREATE INDEX IF NOT EXISTS change_log_group_epoch ON modulo_group.change_log (group_id, incarnation, epoch);

-- SECURITY DEFINER: the members' role needs no privilege on the log (only EXECUTE, which PUBLIC has
-- by default), and a role that cannot write it can never make a membership change fail. It records
-- the group's state as the change left it (read from the tables, not from the caller) and trims.
-- Anyone with USAGE on the schema (a read-only dashboard role, say) may call it, so it does
-- something only once per epoch: a call for an epoch already logged (every change logs its own,
-- in its own transaction, under the group lock) inserts nothing and trims nothing. A stray call
-- can neither forge history nor wipe it.
CREATE OR REPLACE FUNCTION modulo_group.log_change(p_group text, p_cause text, p_subject uuid, p_at timestamptz)
  RETURNS void
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  keep     interval := interval '24 hours';
  max_rows integer  := 1000;
  oldest   timestamptz;
BEGIN
  IF EXISTS (SELECT 1 FROM modulo_group.groups g JOIN modulo_group.change_log c
               ON c.group_id = g.group_id AND c.incarnation = g.incarnation AND c.epoch >= g.epoch
              WHERE g.group_id = p_group) THEN
    RETURN;
  END IF;
  BEGIN
    keep := coalesce(nullif(current_setting('modulo_group.change_log_retention', true), ''), '24 hours')::interval;
  EXCEPTION WHEN data_exception OR syntax_error THEN
    keep := interval '24 hours';
  END;
  BEGIN
    max_rows := greatest(0, coalesce(nullif(current_setting('modulo_group.change_log_max_rows', true), ''), '1000')::integer);
  EXCEPTION WHEN data_exception OR syntax_error THEN
    max_rows := 1000;
  END;
  INSERT INTO modulo_group.change_log (group_id, epoch, size, incarnation, changed_at, cause, subject, assignment)
  SELECT g.group_id, g.epoch, g.size, g.incarnation, p_at, p_cause, p_subject,
         coalesce((SELECT jsonb_agg(jsonb_build_object('member_id', m.member_id, 'name', m.name, 'host', m.host,
                                                       'pid', m.pid, 'index', m.idx)
                                    ORDER BY m.idx NULLS LAST, m.join_seq)
                     FROM modulo_group.members m WHERE m.group_id = g.group_id), '[]'::jsonb)
    FROM modulo_group.groups g WHERE g.group_id = p_group;
  -- Both trims are index range scans of this group's rows (usually empty).
  DELETE FROM modulo_group.change_log WHERE group_id = p_group AND changed_at < p_at - keep;
  SELECT c.changed_at INTO oldest FROM modulo_group.change_log c
   WHERE c.group_id = p_group ORDER BY c.changed_at DESC OFFSET max_rows LIMIT 1;
  IF FOUND THEN
    DELETE FROM modulo_group.change_log WHERE group_id = p_group AND changed_at <= oldest;
  END IF;
END
$$;
