-- modulo-group schema, version 12: every member row records the store that wrote it (`writer`, a
-- random id per store, that is per process unless an app makes several). Member ids must be unique
-- (`MemberIdentity`), but nothing checked it: an adversarial review gave two processes one member id
-- and broke G1 and G2. The second's join deleted the first's live row as its "own earlier row"
-- (without it in the barrier), and the first's renewals, numbered from the wall clock as the second's
-- were, then applied to the second's row and took its index. Now a join deletes or takes over a live
-- row of its member id only if its own store wrote it, and refuses otherwise, naming the row's process;
-- renewals, leaves, releases, adoptions and slot releases touch a row only if their store wrote it. A
-- row without a writer (written before this migration, by an older release that may still run during
-- an upgrade) is another store's (src/internal/pg/statements.ts, `written`).
-- Idempotent; apps with their own migration tool record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (12, '0012_member_writer') ON CONFLICT DO NOTHING;
-- A nullable column without a default: a change of the catalog only (the table's ACCESS EXCLUSIVE
-- lock for a moment); no index (renewals stay HOT updates, migration 0009); no grants.

ALTER TABLE modulo_group.members ADD COLUMN IF NOT EXISTS writer uuid;
