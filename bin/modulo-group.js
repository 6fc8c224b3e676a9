#!/usr/bin/env node
// The `modulo-group` command. Built from src/cli/main.ts by `npm run build`.
import "../dist/src/cli/main.js"
