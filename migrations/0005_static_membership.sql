-- modulo-group schema, version 5: static membership (opt-in). A member may carry an instance id, a
-- stable identity within its group; a graceful leave then RELEASES its row instead of deleting it,
-- and a crashed one's row is held for its rejoin grace after its lease ran out, so a restart with
-- the same instance id takes the same index in the same epoch (no renegotiation). Rows without an
-- instance id (every row before this version) behave exactly as before: their grace is 0.
-- Idempotent; apps with their own migration tool record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (5, '0005_static_membership') ON CONFLICT DO NOTHING;

-- The stable identity (NULL: a dynamic member, as before).
ALTER TABLE modulo_group.members ADD COLUMN IF NOT EXISTS instance_id text
  CHECK (instance_id IS NULL OR length(instance_id) BETWEEN 1 AND 200);
-- When its member released it (a graceful leave). Its lease then ends at once: the row is not live,
-- only held, with its index, until the grace ends or its instance comes back.
ALTER TABLE modulo_group.members ADD COLUMN IF NOT EXISTS released_at timestamptz;
-- How long after its lease ran out the row is held before reaping deletes it (0: at once, as before).
ALTER TABLE modulo_group.members ADD COLUMN IF NOT EXISTS rejoin_grace_ms integer NOT NULL DEFAULT 0
  CHECK (rejoin_grace_ms >= 0);

-- One row per instance id in a group: a second line behind the group lock, under which joins look
-- the instance up before inserting.
CREATE UNIQUE INDEX IF NOT EXISTS members_group_instance
  ON modulo_group.members (group_id, instance_id) WHERE instance_id IS NOT NULL;
