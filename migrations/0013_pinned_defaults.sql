-- modulo-group schema, version 13: the groups' `incarnation` default again, bound to pg_catalog.
-- Migration 0002 wrote it as `floor(extract(epoch FROM clock_timestamp()) * 1000)`, and PostgreSQL
-- binds a default's operators and functions when the default is created, in the search path of the
-- transaction that creates it: `numeric * integer` has no exact operator in pg_catalog, so a
-- `*(numeric, integer)` that a role allowed to create in a schema of that path (`public` before
-- PostgreSQL 15) had planted was bound into the default for good, and ran as the members' role in
-- every change that created a group (an adversarial review). Migrations now run with the search path
-- pinned to `pg_catalog, pg_temp` (src/Migrations.ts); this one sets the default again there, with
-- every function and operator named in pg_catalog.
-- Idempotent; apps with their own migration tool run it in a transaction and record it with:
--   INSERT INTO modulo_group.schema_migrations (version, name) VALUES (13, '0013_pinned_defaults') ON CONFLICT DO NOTHING;
-- A change of the catalog only (the table's ACCESS EXCLUSIVE lock for a moment); no rows are read.

SET LOCAL search_path = pg_catalog, pg_temp;

ALTER TABLE modulo_group.groups ALTER COLUMN incarnation
  SET DEFAULT (pg_catalog.floor(EXTRACT(epoch FROM pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 1000))::bigint;
