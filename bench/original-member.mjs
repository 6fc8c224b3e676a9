// One member of the original design in its own OS process; same stdin/stdout protocol as
// bench/member.mjs. The design itself is bench/original/Original.ts, which the bench transpiles to
// plain JavaScript at start and points ORIGINAL_LIB at (the file only needs `pg`).
import * as readline from "node:readline"

const { OriginalMember } = await import(process.env.ORIGINAL_LIB)

const options = JSON.parse(process.env.MG_BENCH ?? "{}")
const now = () => performance.timeOrigin + performance.now()
const emit = (o) => process.stdout.write(`${JSON.stringify(o)}\n`)

let statements = 0
let last
const member = new OriginalMember({
  url: options.url,
  group: options.groupId,
  workIntervalMs: options.workIntervalMs,
  onStatement: () => statements++,
  onWork: (work) => {
    const t = now()
    if (last !== undefined) emit({ k: "end", m: member.id, e: last.count, i: last.modulo, n: last.count, t })
    last = work
    if (work !== undefined) emit({ k: "start", m: member.id, e: work.count, i: work.modulo, n: work.count, t })
  }
})
await member.connect()
emit({ k: "ready" })

let leaving
const leave = () =>
  (leaving ??= (async () => {
    await member.stop()
    emit({ k: "left", t: now() })
    process.exit(0)
  })())

process.on("SIGTERM", leave)
process.on("SIGINT", leave)
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const command = line.trim()
  if (command === "join") {
    emit({ k: "joining", m: member.id, t: now() })
    member.start()
  } else if (command === "leave") void leave()
  else if (command === "stats") {
    const m = process.memoryUsage()
    // Every statement of the original is a transaction of its own.
    emit({ k: "stats", statements, transactions: statements, rss: m.rss, heap: m.heapUsed, members: 1 })
  }
})
process.stdin.on("end", leave)
