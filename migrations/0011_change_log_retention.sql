-- modulo-group schema, version 11: the change log's retention can no longer fail a change. A
-- retention that parses but reaches past the range of timestamps (`'10000 years'`, "keep the log for
-- ever") made `log_change`'s trim fail with 22008 inside every change transaction: every join, leave
-- and reap of the group failed, for ever (an adversarial review). Such a retention now keeps every row
-- (the row cap still applies), and a negative one counts as 0. Only the function changes (CREATE OR
-- REPLACE keeps its owner, SECURITY DEFINER and grants).
-- Idempotent; apps with their own migration tool record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (11, '0011_change_log_retention') ON CONFLICT DO NOTHING;

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
  cutoff   timestamptz;
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
  -- A retention longer than timestamps reach ('10000 years': keep for ever) keeps every row (the row
  -- cap still applies); a negative one counts as 0. Outside this block the subtraction failed the
  -- change with 22008, so every join, leave and reap of the group failed.
  BEGIN
    cutoff := p_at - greatest(keep, interval '0');
  EXCEPTION WHEN data_exception THEN
    cutoff := NULL;
  END;
  -- Both trims are index range scans of this group's rows (usually empty).
  IF cutoff IS NOT NULL THEN
    DELETE FROM modulo_group.change_log WHERE group_id = p_group AND changed_at < cutoff;
  END IF;
  SELECT c.changed_at INTO oldest FROM modulo_group.change_log c
   WHERE c.group_id = p_group ORDER BY c.changed_at DESC OFFSET max_rows LIMIT 1;
  IF FOUND THEN
    DELETE FROM modulo_group.change_log WHERE group_id = p_group AND changed_at <= oldest;
  END IF;
END
$$;
