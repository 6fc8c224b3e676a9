-- modulo-group schema, version 19: the database refuses a change of a group's mode or slot count.
-- A group's mode and slot count S are fixed when it is created (its first join, `createSlots`, sets
-- `slots` once, at epoch 0); every member maps items to slots by `id mod S` with the S it joined
-- with. A hand edit of `groups.slots` on a live group (an adversarial review, attack104) left the
-- members of the old count working while a joiner of the new count was admitted: items of two
-- slots of different counts (11 of 16 and 3 of 8) were worked by two members at once, and both
-- members' fenced writes committed (2.4-5.7 s, 3 of 3; from 16 to 32 with rows added by hand, 5.1 s).
-- From modulo mode to slots mode, every leave failed; the reverse admitted modulo-mode joiners
-- beside slots-mode members. As 0008 does for a slot's holder, the update fails with SQLSTATE 23514
-- (check_violation) and changes nothing. Members also refuse a view whose slot count is not the one
-- they work under, and a change refuses slot rows that are not exactly 0..S-1 (docs/slots.md).
-- Idempotent; apps with their own migration tool record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (19, '0019_slot_count_guard') ON CONFLICT DO NOTHING;
-- No new grants: the trigger runs with the updating role's rights and reads only the row.
--
-- An AFTER trigger with its test in WHEN, as 0008's: it fires only for a refused update (no cost to
-- the changes' and renewals' updates of `groups`, which do not touch `slots`).

CREATE OR REPLACE FUNCTION modulo_group.slot_count_guard() RETURNS trigger
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
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
  WHEN (NEW.slots IS DISTINCT FROM OLD.slots AND (OLD.slots IS NOT NULL OR OLD.epoch OPERATOR(pg_catalog.<>) 0::int8))
  EXECUTE FUNCTION modulo_group.slot_count_guard();
ALTER TABLE modulo_group.groups ENABLE ALWAYS TRIGGER slot_count_guard;
