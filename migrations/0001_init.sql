-- modulo-group schema, version 1.
-- Apps with their own migration tool apply this file as-is (it is idempotent)
-- and then record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (1, '0001_init') ON CONFLICT DO NOTHING;

CREATE SCHEMA IF NOT EXISTS modulo_group;

CREATE TABLE IF NOT EXISTS modulo_group.schema_migrations (
  version    integer     PRIMARY KEY,
  name       text        NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);

-- One row per group. The row lock taken FOR UPDATE by every membership change
-- is the only arbiter: there is no boss.
CREATE TABLE IF NOT EXISTS modulo_group.groups (
  group_id   text        PRIMARY KEY CHECK (length(group_id) BETWEEN 1 AND 200),
  epoch      bigint      NOT NULL DEFAULT 0 CHECK (epoch >= 0),
  size       integer     NOT NULL DEFAULT 0 CHECK (size >= 0),
  changed_at timestamptz NOT NULL DEFAULT now()
);

-- One row per live member incarnation.
CREATE TABLE IF NOT EXISTS modulo_group.members (
  member_id        uuid        PRIMARY KEY,
  group_id         text        NOT NULL REFERENCES modulo_group.groups (group_id) ON DELETE CASCADE,
  idx              integer     CHECK (idx >= 0),
  acked_epoch      bigint      NOT NULL DEFAULT 0,
  lease_expires_at timestamptz NOT NULL,
  heartbeat_at     timestamptz NOT NULL,
  joined_at        timestamptz NOT NULL,
  join_seq         bigint      GENERATED ALWAYS AS IDENTITY,
  host             text        NOT NULL DEFAULT '',
  pid              integer     NOT NULL DEFAULT 0,
  name             text        NOT NULL DEFAULT '',
  -- G1 enforced by the database too: no two members of a group share an index.
  CONSTRAINT members_group_idx_unique UNIQUE (group_id, idx) DEFERRABLE INITIALLY DEFERRED
);

CREATE INDEX IF NOT EXISTS members_group_lease ON modulo_group.members (group_id, lease_expires_at);
