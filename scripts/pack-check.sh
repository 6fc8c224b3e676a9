#!/usr/bin/env bash
# Checks the package as a user gets it: build, `npm pack`, install the tarball
# into a scratch app with the same pinned Effect versions, load it, and
# type-check the README's first ```ts example against it.
# KEEP_SCRATCH=1 keeps the scratch directory for inspection.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

fail() {
  echo "pack-check: FAILED: $*" >&2
  exit 1
}

step() {
  echo "pack-check: $*"
}

work="$(mktemp -d "${TMPDIR:-/tmp}/modulo-group-pack-check.XXXXXX")"
cleanup() {
  if [[ "${KEEP_SCRATCH:-}" == "1" ]]; then
    echo "pack-check: scratch kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

[[ -f README.md ]] || fail "README.md not found in $root"

# First, as it is the cheapest check.
step "extracting the first \`\`\`ts block of README.md"
awk '
  !inside && /^```ts[[:space:]]*$/ { inside = 1; found = 1; next }
  inside && /^```/ { exit }
  inside { print }
  END { if (!found) exit 3 }
' README.md >"$work/example.ts" || fail "README.md has no \`\`\`ts fenced block"
[[ -s "$work/example.ts" ]] || fail "the first \`\`\`ts block of README.md is empty"

step "building (npm run build)"
npm run build >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; fail "npm run build"; }

step "packing (npm pack)"
# The build just ran; skip `prepare` so it does not run twice.
npm pack --ignore-scripts --pack-destination "$work" >"$work/pack.log" 2>&1 || {
  cat "$work/pack.log" >&2
  fail "npm pack"
}
tarball="$(ls "$work"/*.tgz 2>/dev/null | head -n 1)"
[[ -n "$tarball" ]] || fail "npm pack produced no tarball"
step "tarball $(basename "$tarball") ($(du -h "$tarball" | cut -f1))"

# Every file package.json points at (types, bin) must be in the tarball.
listing="$(tar -tzf "$tarball")"
for file in $(node -e '
  const pkg = require(process.argv[1])
  const bins = typeof pkg.bin === "string" ? [pkg.bin] : Object.values(pkg.bin ?? {})
  for (const f of [pkg.types, ...bins].filter(Boolean)) console.log(f.replace(/^\.\//, ""))
' "$root/package.json"); do
  grep -qxF "package/$file" <<<"$listing" || fail "$file (named in package.json) is missing from the tarball"
done

# Same versions as ours, read from package.json, so the check sees what we test with.
pinned() {
  node -e '
    const pkg = require(process.argv[1])
    const name = process.argv[2]
    const version = (pkg.dependencies ?? {})[name] ?? (pkg.devDependencies ?? {})[name]
    if (!version) { console.error(`pack-check: ${name} is not in package.json`); process.exit(1) }
    console.log(`${name}@${version}`)
  ' "$root/package.json" "$1"
}
deps=()
for name in effect @effect/sql @effect/sql-pg @effect/platform typescript @types/node; do
  deps+=("$(pinned "$name")") || fail "reading the pinned version of $name"
done

scratch="$work/scratch"
mkdir -p "$scratch/src"
cp "$work/example.ts" "$scratch/src/example.ts"
cat >"$scratch/package.json" <<'JSON'
{
  "name": "modulo-group-pack-check",
  "private": true,
  "type": "module"
}
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
    "noEmit": true,
    "skipLibCheck": true
  },
  "include": ["src"]
}
JSON

step "installing the tarball and ${deps[*]} into $scratch"
(cd "$scratch" && npm install --no-audit --no-fund "$tarball" "${deps[@]}") >"$work/install.log" 2>&1 || {
  cat "$work/install.log" >&2
  fail "npm install in the scratch app"
}

step "loading the package entry point"
(cd "$scratch" && node --input-type=module -e 'await import("modulo-group")') ||
  fail "import(\"modulo-group\") failed in the scratch app (missing files in the tarball?)"

step "type-checking the README example (tsc --noEmit)"
(cd "$scratch" && npx --no-install tsc --noEmit -p tsconfig.json) ||
  fail "the README example does not type-check against the packed package (see the errors above; file: src/example.ts)"

step "OK"
