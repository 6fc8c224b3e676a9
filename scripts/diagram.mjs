#!/usr/bin/env node
/**
 * Generates docs/state-machine.md, a Mermaid `stateDiagram-v2`, from the pure transition function:
 * it runs `Transition.transition` on representative states and events and draws the edges it takes.
 *
 *   npm run diagram          (builds dist/, then runs this file against dist/src)
 *
 * test/Transition.test.ts imports `generate` with the TypeScript sources and fails when the committed
 * file differs from what the code produces.
 */
import { writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

/** Where the document lives, relative to the package root. */
export const outputPath = "docs/state-machine.md"

/**
 * @typedef {{ epoch: number, index: number, size: number, incarnation: number }} Slot
 * @typedef {{ _tag: string, [key: string]: unknown }} Tagged
 * @typedef {{ label: string, event: Tagged }} LabelledEvent
 */

/**
 * The document for the given modules (`Transition` and `MemberState`, from src/ or dist/src/).
 *
 * @param {{ Transition: any, MemberState: any }} modules
 * @returns {string}
 */
export const generate = ({ MemberState, Transition }) => {
  const S = MemberState.MemberState
  const E = Transition.Event
  /** @param {number} epoch @returns {Slot} */
  const slot = (epoch) => ({ epoch, index: 1, size: 3, incarnation: 1 })
  /** @param {number} epoch @param {boolean} allAcked */
  const view = (epoch, allAcked) => ({ epoch, index: 1, size: 3, acked: epoch, allAcked, expired: false, incarnation: 1, clock: 0 })

  /**
   * The node a state is drawn as: its tag, or its tag and the flags that change what it does (work
   * still stopping, or stuck past the stop timeout).
   * @param {Tagged} state
   * @returns {{ id: string, name: string }}
   */
  const nodeOf = (state) => {
    const flag = state.stuck === true ? "stuck" : state.stopping === true ? "stopping" : undefined
    return flag === undefined ? { id: state._tag, name: state._tag } : { id: `${state._tag}_${flag}`, name: `${state._tag} (${flag})` }
  }

  /** Representative states: one per tag and flag, all in epoch 5 (Renegotiating moves to 6). */
  const states = [
    S.Joining(),
    S.Awaiting(slot(5)),
    S.Assigned(slot(5)),
    S.Renegotiating({ ...slot(5), next: slot(6), stuck: false }),
    S.Renegotiating({ ...slot(5), next: slot(6), stuck: true }),
    S.Fenced({ ...slot(5), stopping: false, stuck: false }),
    S.Fenced({ ...slot(5), stopping: true, stuck: false }),
    S.Fenced({ ...slot(5), stopping: true, stuck: true }),
    S.Lost(),
    S.Leaving({ stopping: false, stuck: false }),
    S.Leaving({ stopping: true, stuck: false }),
    S.Leaving({ stopping: true, stuck: true }),
    S.Left()
  ]

  /**
   * The events to try on a state, with the qualifier that tells the variants apart.
   * @param {Tagged} state
   * @returns {Array<LabelledEvent>}
   */
  const eventsFor = (state) => {
    const known = typeof state.epoch === "number" ? state.epoch : 5
    const next = state.next !== undefined ? /** @type {Slot} */ (state.next).epoch : undefined
    /** @type {Array<LabelledEvent>} */
    const list = []
    for (const tag of Transition.eventTags) {
      switch (tag) {
        case "Joined":
          list.push({ label: "Joined (all acked)", event: E.Joined({ view: view(7, true) }) })
          list.push({ label: "Joined (not all acked)", event: E.Joined({ view: view(7, false) }) })
          break
        case "Renewed":
          list.push({ label: "Renewed (older epoch)", event: E.Renewed({ view: view(known - 1, true) }) })
          list.push({ label: "Renewed (not all acked)", event: E.Renewed({ view: view(known, false) }) })
          list.push({ label: "Renewed (all acked)", event: E.Renewed({ view: view(known, true) }) })
          list.push({
            label: "Renewed (same epoch, other index)",
            event: E.Renewed({ view: { ...view(known, true), index: 0 } })
          })
          if (next === undefined) {
            list.push({ label: "Renewed (newer epoch)", event: E.Renewed({ view: { ...view(known + 1, false), acked: known } }) })
          } else {
            list.push({ label: "Renewed (next epoch)", event: E.Renewed({ view: { ...view(next, false), acked: known } }) })
            list.push({ label: "Renewed (newer epoch)", event: E.Renewed({ view: { ...view(next + 1, false), acked: known } }) })
          }
          break
        case "Gone":
          list.push({ label: "Gone (lease ran out)", event: E.Gone({ early: false }) })
          list.push({ label: "Gone (early)", event: E.Gone({ early: true }) })
          break
        case "JoinFailed":
        case "RenewFailed":
          list.push({ label: tag, event: E[tag]({ reason: "timeout" }) })
          break
        default:
          list.push({ label: tag, event: E[tag]() })
      }
    }
    return list
  }

  /** @type {Array<{ from: string, to: string, toName: string, fromName: string, label: string, commands: string }>} */
  const edges = []
  /** @type {Map<string, Array<string>>} */
  const ignored = new Map()
  for (const state of states) {
    const from = nodeOf(state)
    for (const { event, label } of eventsFor(state)) {
      const [after, commands] = Transition.transition(state, event)
      // Ignored: the same state (structurally: a renewal may rebuild an equal one) and no command.
      if (JSON.stringify(after) === JSON.stringify(state) && commands.length === 0) {
        const list = ignored.get(from.id) ?? []
        if (!list.includes(event._tag)) list.push(event._tag)
        ignored.set(from.id, list)
        continue
      }
      const to = nodeOf(after)
      edges.push({
        from: from.id,
        fromName: from.name,
        to: to.id,
        toName: to.name,
        label,
        commands: commands.map((/** @type {Tagged} */ c) => (c._tag === "Ack" ? `Ack(${c.epoch})` : c._tag)).join(", ")
      })
    }
  }
  // An event tag ignored in one variant but not another is not "ignored" for that state.
  for (const [id, list] of ignored) {
    ignored.set(id, list.filter((e) => !edges.some((x) => x.from === id && x.label.split(" ")[0] === e)))
  }
  const nodes = states.map(nodeOf)

  const mermaid = [
    "stateDiagram-v2",
    "  direction LR",
    ...nodes.filter((n) => n.id !== n.name).map((n) => `  state "${n.name}" as ${n.id}`),
    "  [*] --> Joining",
    ...edges.map((e) => `  ${e.from} --> ${e.to} : ${e.label}${e.commands === "" ? "" : ` / ${e.commands}`}`),
    "  Left --> [*]"
  ]

  const table = [
    "| state | event | next state | commands |",
    "| --- | --- | --- | --- |",
    ...edges.map((e) => `| ${e.fromName} | ${e.label} | ${e.toName} | ${e.commands === "" ? "-" : e.commands} |`)
  ]

  return [
    "<!-- Generated by `npm run diagram` (scripts/diagram.mjs) from src/Transition.ts. Do not edit: test/Transition.test.ts fails when this file is stale. -->",
    "",
    "# The member state machine",
    "",
    "Each member runs the pure function `Transition.transition(state, event) -> [state, commands]`;",
    "the interpreter in `Membership` carries events in (store replies, its timers, its work, the app)",
    "and runs the commands out. A notification is not an event: anyone who can connect can send one,",
    "so it only makes the member renew sooner, and decides nothing. The diagram below is drawn by",
    "running that function on one representative state per tag and flag (epoch 5; `Renegotiating`",
    "moves to 6; `stopping`: its work has not stopped yet; `stuck`: not within `stopTimeout`) and",
    "every event, with variants where the event's content matters: an edge is labelled",
    "`event / commands`. Events not drawn are ignored in that state: the state is kept and nothing is",
    "done. `Reap` is added to the commands of a renewal whose view reports an expired member (not",
    "drawn). `Alarm` logs an error and counts it (`modulo_group_alarms`).",
    "",
    "```mermaid",
    ...mermaid,
    "```",
    "",
    "## Transitions",
    "",
    ...table,
    "",
    "## Ignored events",
    "",
    ...nodes.map((n) => `- **${n.name}**: ${(ignored.get(n.id) ?? []).join(", ") || "none"}`),
    ""
  ].join("\n")
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href
if (isMain) {
  const root = join(dirname(fileURLToPath(import.meta.url)), "..")
  const load = (/** @type {string} */ name) => import(pathToFileURL(join(root, "dist", "src", `${name}.js`)).href)
  const [Transition, MemberState] = await Promise.all([load("Transition"), load("MemberState")]).catch((e) => {
    console.error(`diagram: cannot load dist/src (run \`npm run build\` first): ${e}`)
    process.exit(1)
  })
  writeFileSync(join(root, outputPath), generate({ Transition, MemberState }))
  console.log(`diagram: wrote ${outputPath}`)
}
