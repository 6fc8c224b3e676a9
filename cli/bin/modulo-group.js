#!/usr/bin/env node
// The `modulo-group` command. Built from cli/src/main.ts by `npm run build` (in the repository root).
import "../dist/main.js"
