#!/bin/bash
# CPU per test file (issue 15, `npm test` in at most 150 s): each file alone under `npx vitest run`,
# its user and system CPU with its children (CLI processes, embedded servers) by /usr/bin/time, and
# the CPU of the server processes (the machine PostgreSQL's postmaster's reaped children) it used.
# Needs DATABASE_URL (the machine's PostgreSQL) and /usr/bin/time. Prints one line per file:
#   file user_s sys_s wall_s server_ticks exit_code
# A file alone pays vitest's own start (about 5 s of CPU here, test/bench/cover.test.ts), which a
# full run pays once per fork, not per file.
set -u
cd "$(dirname "$0")/.."
: "${DATABASE_URL:?set DATABASE_URL to the machine PostgreSQL}"
postmaster=$(pgrep -o -x postgres)
server() { awk '{print $16 + $17}' "/proc/$postmaster/stat"; }
for f in $(find test -name "*.test.ts" | sort); do
  before=$(server)
  /usr/bin/time -f "%U %S %e" -o /tmp/testCpu.$$ npx vitest run "$f" >/dev/null 2>&1
  rc=$?
  echo "$f $(cat /tmp/testCpu.$$) $(( $(server) - before )) $rc"
done
rm -f /tmp/testCpu.$$
