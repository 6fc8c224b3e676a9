-- modulo-group schema, version 19: the database refuses a change of a group's mode or slot count.
-- A group's mode and slot count S are fixed when it is created (its first join, `createSlots`, sets
-- `slots` once, at epoch 0); every member maps items to slots by `id mod S` with the S it joined
-- with. A hand edit of `groups.slots` on a live group (an adversarial review, attack104) left the
-- members of the old count working while a joiner of the new count was admitted: items of two
-- slots of different counts (11 of 16 and 3 of 8) were worked by two members at once, and both
-- members' fenced writes committed (2.4-5.7 s, 3 of 3; from 16 to 32 with rows added by hand, 5.1 s).
-- From modulo mode to slots mode, every leave failed; the reverse admitted modulo-mode joiners
-- beside slots-mode members. As 0008 does for a slot's holder, the update fails with SQLSTATE 23514
-- (check_violation) and changes nothing. Members also refuse a view whose mode or slot count is not
-- the one they work under, and a change refuses slot rows that are not exactly 0..S-1 (docs/slots.md).
-- Idempotent; apps with their own migration tool record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (19, '0019_slot_count_guard') ON CONFLICT DO NOTHING;
-- No new grants: the trigger runs with the updating role's rights and reads the row and the group's
-- member rows, which the members' role reads anyway.
--
-- An AFTER trigger with its test in WHEN, as 0008's: it fires only for an update of `slots` (no cost
-- to the changes' and renewals' updates of `groups`, which do not touch it), and lets the first
-- join's through (a group at epoch 0 with no member row). No database check holds against an owner
-- who drops the trigger, or a transaction that also deletes and puts back every member row: changes
-- then refuse slots held by nobody in a group with members, and the members' renewals refuse a group
-- of the other mode or count (docs/slots.md, "Hand edits").

CREATE OR REPLACE FUNCTION modulo_group.slot_count_guard() RETURNS trigger
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- The first join's: from modulo mode's NULL, in a group no change has made an epoch of, with no
  -- member row. Not the epoch alone: a transaction that set it to 0 first, then the count, then the
  -- epoch back, passed on a live modulo-mode group with the app's grants (a review, attack105).
  IF OLD.slots IS NULL AND OLD.epoch OPERATOR(pg_catalog.=) 0::int8
     AND NOT EXISTS (SELECT 1 FROM modulo_group.members m WHERE m.group_id OPERATOR(pg_catalog.=) OLD.group_id) THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION USING ERRCODE = 'check_violation',
    MESSAGE = format('modulo_group.groups: the mode of group %L is fixed when it is created (%s, not %s)',
                     OLD.group_id,
                     CASE WHEN OLD.slots IS NULL THEN 'modulo mode' ELSE format('slots mode with %s slots', OLD.slots) END,
                     CASE WHEN NEW.slots IS NULL THEN 'modulo mode' ELSE format('slots mode with %s slots', NEW.slots) END),
    HINT = 'Members map items by the slot count they joined with; to change it, stop every member and use a new group id (docs/slots.md).';
END
$$;

DROP TRIGGER IF EXISTS slot_count_guard ON modulo_group.groups;
CREATE TRIGGER slot_count_guard AFTER UPDATE ON modulo_group.groups
  FOR EACH ROW
  WHEN (NEW.slots IS DISTINCT FROM OLD.slots)
  EXECUTE FUNCTION modulo_group.slot_count_guard();
ALTER TABLE modulo_group.groups ENABLE ALWAYS TRIGGER slot_count_guard;
