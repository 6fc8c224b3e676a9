-- modulo-group schema, version 10: renewals apply in the order they were sent. Two renewals of one
-- member can be on the server at once (the next is sent when the one in flight has run past its
-- patience, and nothing bounds how long a statement stalls on the server before it reaches its row);
-- the older, reaching the row after the newer committed, set the lease to its own, earlier time + lease,
-- before the deadline the member bases on the newer one. Every write of a member's lease (a join, a
-- takeover, a renewal) now records a number from its store's counter, and a renewal applies only when
-- its number is above the row's (docs/protocol.md, "Never back"). A row without one (written before
-- this migration) takes any renewal.
-- Idempotent; apps with their own migration tool record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (10, '0010_renewal_order') ON CONFLICT DO NOTHING;
-- A nullable column without a default: a change of the catalog only (the table's ACCESS EXCLUSIVE
-- lock for a moment); no index (renewals stay HOT updates, migration 0009); no grants.

ALTER TABLE modulo_group.members ADD COLUMN IF NOT EXISTS renewal_seq bigint;
