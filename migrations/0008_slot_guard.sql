-- modulo-group schema, version 8: the database refuses a slot row update that breaks the fencing
-- token. A slot's generation is its fencing token with the slot (0007_slots): a fenced transaction
-- commits only for the holder at its generation. The library bumps the generation with every holder
-- change; this trigger makes the database refuse any update that does not, such as a hand edit of
-- `holder` (by an operator or a script with the documented grants), which would otherwise let two
-- members commit fenced writes with one token. As `UNIQUE (group_id, idx)` does for indices in
-- modulo mode: a careless edit fails, with SQLSTATE 23514 (check_violation), and changes nothing.
-- Idempotent; apps with their own migration tool record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (8, '0008_slot_guard') ON CONFLICT DO NOTHING;
-- No new grants: the trigger runs with the updating role's rights and reads only the row.
--
-- An AFTER trigger, with its test in WHEN: it fires only for a refused update, and it takes no row
-- lock of its own. (A BEFORE trigger locks the row first, in the strongest mode the statement's SET
-- list could need: the change that only retargets owners names `generation` in its SET list, so it
-- would then wait for every open fenced transaction on its slots, which it must not.)

CREATE OR REPLACE FUNCTION modulo_group.slot_token_guard() RETURNS trigger
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NEW.generation < OLD.generation THEN
    RAISE EXCEPTION USING ERRCODE = 'check_violation',
      MESSAGE = format('modulo_group.slots: the generation of slot %s of group %L cannot go back (%s to %s)',
                       OLD.slot, OLD.group_id, OLD.generation, NEW.generation),
      HINT = 'A slot''s generation is its fencing token; see docs/slots.md.';
  END IF;
  IF NEW.group_id IS DISTINCT FROM OLD.group_id OR NEW.slot IS DISTINCT FROM OLD.slot THEN
    RAISE EXCEPTION USING ERRCODE = 'check_violation',
      MESSAGE = format('modulo_group.slots: slot %s of group %L cannot be renumbered or moved to another group',
                       OLD.slot, OLD.group_id);
  END IF;
  RAISE EXCEPTION USING ERRCODE = 'check_violation',
    MESSAGE = format('modulo_group.slots: slot %s of group %L changes holder without a new generation (still %s)',
                     OLD.slot, OLD.group_id, OLD.generation),
    HINT = 'Set generation = generation + 1 with the holder: the old holder''s fenced transactions must fail.';
END
$$;

DROP TRIGGER IF EXISTS slot_token_guard ON modulo_group.slots;
CREATE TRIGGER slot_token_guard AFTER UPDATE ON modulo_group.slots
  FOR EACH ROW
  WHEN (NEW.generation < OLD.generation
        OR (NEW.holder IS DISTINCT FROM OLD.holder AND NEW.generation <= OLD.generation)
        OR NEW.group_id IS DISTINCT FROM OLD.group_id OR NEW.slot IS DISTINCT FROM OLD.slot)
  EXECUTE FUNCTION modulo_group.slot_token_guard();
