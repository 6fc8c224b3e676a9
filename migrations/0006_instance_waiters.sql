-- modulo-group schema, version 6: who is waiting for an instance id (static membership), for people
-- only. A member whose join finds its instance id held by a live member waits and retries; it has no
-- row in `members`, so without this table `status` and the dashboard could not show it. The waiting
-- member writes its row here at each retry (`seen_at`), and deletes it when it takes the instance
-- over, stops waiting or leaves. Nothing in the protocol reads this table: a forged, stale or missing
-- row changes only what `status` shows. Idempotent; apps with their own migration tool record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (6, '0006_instance_waiters') ON CONFLICT DO NOTHING;
--
-- No foreign key to `groups`: inserting a referencing row would take a key-share lock on the group
-- row, and every membership change holds that row FOR UPDATE. Rows of a waiter that crashed are shown
-- only while `seen_at + lease_ms` is ahead (its lease length: it retries at least every heartbeat),
-- and deleted by the next write of any waiter in the group once twice as old.

CREATE TABLE IF NOT EXISTS modulo_group.instance_waiters (
  member_id   uuid        PRIMARY KEY,
  group_id    text        NOT NULL CHECK (length(group_id) BETWEEN 1 AND 200),
  instance_id text        NOT NULL CHECK (length(instance_id) BETWEEN 1 AND 200),
  host        text        NOT NULL DEFAULT '',
  pid         integer     NOT NULL DEFAULT 0,
  name        text        NOT NULL DEFAULT '',
  -- Since when it waits (its first busy join), and its latest retry.
  since       timestamptz NOT NULL,
  seen_at     timestamptz NOT NULL,
  -- The waiter's lease length: its row is shown while seen_at + lease_ms is ahead.
  lease_ms    integer     NOT NULL CHECK (lease_ms > 0 AND lease_ms <= 3600000)
);

CREATE INDEX IF NOT EXISTS instance_waiters_group ON modulo_group.instance_waiters (group_id, instance_id);
