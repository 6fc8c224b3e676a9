-- modulo-group schema, version 2: one committed state per view, fencing tokens that survive a
-- restore, visible stuck work. Idempotent; apps with their own migration tool record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (2, '0002_consistent_views') ON CONFLICT DO NOTHING;

-- Every change stamps each member row with the epoch and size its index belongs to, so a
-- renewal that waited on a change's row lock (and so re-reads its own row at the new version
-- while the rest of its statement reads the old snapshot) can tell, from its own row alone,
-- which committed state it saw.
ALTER TABLE modulo_group.members ADD COLUMN IF NOT EXISTS assigned_epoch bigint  NOT NULL DEFAULT 0;
ALTER TABLE modulo_group.members ADD COLUMN IF NOT EXISTS assigned_size  integer NOT NULL DEFAULT 0;
-- Set while the member's work does not stop (it holds the barrier and keeps renewing).
ALTER TABLE modulo_group.members ADD COLUMN IF NOT EXISTS stopping_since timestamptz;

-- The group's incarnation: the first half of its fencing token (incarnation, epoch). A new one,
-- never below the database clock in milliseconds, begins whenever a change finds no live member
-- (a group formed anew, or a database restored from a backup whose leases have all run out), so
-- a token is never issued twice even when epochs start over.
ALTER TABLE modulo_group.groups ADD COLUMN IF NOT EXISTS incarnation bigint NOT NULL
  DEFAULT (floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint;
