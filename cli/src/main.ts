/**
 * Entry point of the `modulo-group` command (`cli/bin/modulo-group.js` imports the built file).
 *
 * Exit codes: 0 on success and after Ctrl-C / SIGTERM / SIGHUP (the member leaves first; `join`
 * exits 1 when its final leave gave up, `migrate` when stopped before the schema is in place, `groups` and
 * `status` before their answer), 1 when the command failed (database unreachable,
 * damaged schema, a standard output that cannot be written, ...), 2 on bad input (unknown option, malformed duration,
 * invalid config or group id). Errors are one line on stderr; `--verbose` adds the full cause.
 *
 * @since 0.1.0
 * @internal
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeTerminal from "@effect/platform-node/NodeTerminal"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import { exitCodeOf } from "./CliError.js"
import { run } from "./Cli.js"

// A closed stdout (`modulo-group join g | head -3`) or a closed terminal (SIGHUP): stop gracefully
// (`join` leaves its group), as on SIGTERM, instead of crashing on EPIPE or being killed by the
// signal. Said once: runMain takes the first SIGTERM as a request to stop, and a second would kill.
let stopping = false
const stopGracefully = () => {
  if (stopping) return
  stopping = true
  process.kill(process.pid, "SIGTERM")
}
// Any other failure to write (a full disk, /dev/full, an I/O error): said once on stderr, the
// command stops as on SIGTERM, and the exit code is 1, never 0 (an adversarial review: `groups
// --json > /dev/full` exited 0 with nothing written and nothing said).
// Not by a signal: a command that has already finished would be killed by it (runMain's handler is
// gone by then); the command is interrupted instead, which is what runMain does on SIGTERM.
let stdoutFailed = false
let onStdoutFailed: () => void = () => undefined
const stdoutFailure = new Promise<void>((resolve) => {
  onStdoutFailed = resolve
})
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") return stopGracefully()
  if (stdoutFailed) return
  stdoutFailed = true
  // Also when the command has already finished (its exit code set, the process about to end).
  process.exitCode = 1
  process.stderr.write(`modulo-group: cannot write to standard output: ${error.message}\n`)
  onStdoutFailed()
})
// Once: a second SIGHUP kills the process at once, as a second Ctrl-C does.
process.once("SIGHUP", stopGracefully)

// runMain takes the first SIGTERM as a request to stop and lets a second one kill. Two within a second
// are one request: `timeout 60 modulo-group join g` signals the process, then its process group, and
// the second signal killed `join` in the middle of its leave (its row stayed until its lease ran out;
// an adversarial review). A SIGTERM a second or more after the first still kills at once.
let firstTerm: number | undefined
process.on("SIGTERM", () => {
  const now = Date.now()
  if (firstTerm === undefined) {
    firstTerm = now
    return
  }
  if (now - firstTerm < 1_000) return
  process.removeAllListeners("SIGTERM")
  process.kill(process.pid, "SIGTERM")
})

// As runMain on SIGTERM: the main fiber interrupted (a race would lose the cause a command dies
// with when interrupted, e.g. migrate's exit code 1).
const interruptOnStdoutFailure = Effect.withFiberRuntime<void>((fiber) => {
  void stdoutFailure.then(() => fiber.unsafeInterruptAsFork(fiber.id()))
  return Effect.void
})

const program = Effect.zipRight(interruptOnStdoutFailure, Effect.suspend(() => run(process.argv))).pipe(
  // Anything not reported by a command (a bug): one line, the details with --verbose.
  Effect.tapErrorCause((cause) =>
    Effect.sync(() => {
      if (exitCodeOf(cause) !== 1 || Cause.isInterruptedOnly(cause)) return
      const failure = Cause.squash(cause)
      if ((failure as { _tag?: unknown })?._tag === "Exit") return
      process.stderr.write(`modulo-group: unexpected error: ${String((failure as Error)?.message ?? failure)}\n`)
      if (process.argv.includes("--verbose")) process.stderr.write(`${Cause.pretty(cause)}\n`)
    })
  ),
  // What @effect/cli needs, and no more: NodeContext.layer would also load the child-process and
  // worker modules at every start.
  Effect.provide(Layer.mergeAll(NodeFileSystem.layer, NodePath.layer, NodeTerminal.layer))
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  disablePrettyLogger: true,
  teardown: (exit, onExit) => {
    const code = Exit.isSuccess(exit) ? 0 : exitCodeOf(exit.cause)
    onExit(code === 0 && stdoutFailed ? 1 : code)
  }
})
