-- modulo-group schema, version 16: a member row whose member id changes forgets the group's record of
-- what a change found missing (migration 0015), as a row put back by hand does. In slots mode a
-- change also counts, as missing, the slots held by a member id that no row has (a row deleted, or
-- its member id changed, by hand; recorded as -1 - slot), and waits until they have been so for the
-- group's longest lease. A row renamed, renamed back and renamed again with no change in between was
-- waited out from the first rename's record, which held the same slots (an adversarial review: 1.5-1.7
-- s of two holders of a slot). Forgetting is always safe: a change that finds something missing and no
-- record waits a whole lease from then. A static takeover (modulo mode) renames its instance's row too,
-- and forgets the record as well: a wait for missing indices then starts anew at the next change.
-- Idempotent; apps with their own migration tool record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (16, '0016_forget_on_rename') ON CONFLICT DO NOTHING;
-- A trigger only (the function is 0015's). No grants: the members' role already updates `groups`.

DROP TRIGGER IF EXISTS forget_missing_member ON modulo_group.members;
CREATE TRIGGER forget_missing_member
  AFTER UPDATE OF member_id ON modulo_group.members
  FOR EACH ROW WHEN (NEW.member_id IS DISTINCT FROM OLD.member_id)
  EXECUTE FUNCTION modulo_group.forget_missing();
ALTER TABLE modulo_group.members ENABLE ALWAYS TRIGGER forget_missing_member;
