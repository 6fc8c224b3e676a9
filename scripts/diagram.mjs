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

  // `Transition.step`: the decisions around the state machine, on a representative member (assigned
  // in epoch 5, term 1, its last renewal sent at 0 so its deadline is 8000; lease 10 s, margin 2 s).
  const O = Transition.Observation
  const R = Transition.RenewalReply
  const timing = { leaseMs: 10_000, validMs: 8_000, heartbeatMs: 1_000, fenceMarginMs: 2_000 }
  const member = {
    ...Transition.initialMember(timing),
    state: S.Assigned(slot(5)),
    term: 1,
    acked: 5,
    deadline: 8_000,
    clockReading: { sentAt: 0, database: 1_000, roundTrip: 10 }
  }
  /** @param {number} clock */
  const replyView = (clock) => R.View({ view: { ...view(5, true), clock } })
  const leavingStuck = S.Leaving({ stopping: true, stuck: true })
  /** @type {Array<{ label: string, input: Tagged, now: number, base?: object }>} */
  const stepCases = []
  for (const tag of Transition.observationTags) {
    switch (tag) {
      case "RenewalReplied":
        stepCases.push(
          { label: "RenewalReplied (in time)", input: O.RenewalReplied({ term: 1, sentAt: 1_000, receivedAt: 1_010, reply: replyView(2_000) }), now: 1_010 },
          { label: "RenewalReplied (at or after the deadline it would set)", input: O.RenewalReplied({ term: 1, sentAt: 1_000, receivedAt: 9_000, reply: replyView(2_000) }), now: 9_000 },
          { label: "RenewalReplied (database clock stepped ahead)", input: O.RenewalReplied({ term: 1, sentAt: 1_000, receivedAt: 1_010, reply: replyView(7_000) }), now: 1_010 },
          { label: "RenewalReplied (database clock stepped back)", input: O.RenewalReplied({ term: 1, sentAt: 1_000, receivedAt: 1_010, reply: replyView(-5_000) }), now: 1_010 },
          { label: "RenewalReplied (earlier term)", input: O.RenewalReplied({ term: 0, sentAt: 1_000, receivedAt: 1_010, reply: replyView(2_000) }), now: 1_010 },
          { label: "RenewalReplied (no row, before the deadline)", input: O.RenewalReplied({ term: 1, sentAt: 1_000, receivedAt: 1_010, reply: R.NoRow() }), now: 1_010 },
          { label: "RenewalReplied (no row, after the deadline)", input: O.RenewalReplied({ term: 1, sentAt: 8_000, receivedAt: 8_010, reply: R.NoRow() }), now: 8_010 },
          { label: "RenewalReplied (failed)", input: O.RenewalReplied({ term: 1, sentAt: 1_000, receivedAt: 1_010, reply: R.Failed({ reason: "timeout" }) }), now: 1_010 }
        )
        break
      case "DeadlineCheck":
        stepCases.push(
          { label: "DeadlineCheck (before the deadline)", input: O.DeadlineCheck(), now: 7_999 },
          { label: "DeadlineCheck (deadline passed)", input: O.DeadlineCheck(), now: 8_000 },
          { label: "DeadlineCheck (already fired for this deadline)", input: O.DeadlineCheck(), now: 8_050, base: { fencedFor: 8_000 } }
        )
        break
      case "Acknowledged":
        stepCases.push({ label: "Acknowledged (epoch 6)", input: O.Acknowledged({ epoch: 6 }), now: 0 })
        break
      case "Reaped":
        stepCases.push({ label: "Reaped (sent at 900)", input: O.Reaped({ sentAt: 900 }), now: 950 })
        break
      case "AckingCurrent":
        stepCases.push(
          { label: "AckingCurrent (renewal 7, awaiting)", input: O.AckingCurrent({ renewal: 7 }), now: 0, base: { state: S.Awaiting(slot(5)) } },
          { label: "AckingCurrent (renewal 7, assigned: not recorded)", input: O.AckingCurrent({ renewal: 7 }), now: 0 }
        )
        break
      case "StuckWorkStopped":
        stepCases.push({ label: "StuckWorkStopped", input: O.StuckWorkStopped(), now: 900, base: { stuckSince: 300 } })
        break
      case "SlotStopped":
      case "SlotsReleased":
        // Slots mode: in the slots section below.
        break
      case "StuckHeartbeat":
        stepCases.push(
          { label: "StuckHeartbeat (scope closing, work stuck)", input: O.StuckHeartbeat(), now: 6_000, base: { state: leavingStuck, closing: true, stuckSince: 5_000 } },
          { label: "StuckHeartbeat (not closing)", input: O.StuckHeartbeat(), now: 6_000, base: { state: leavingStuck, stuckSince: 5_000 } }
        )
        break
      case "StoppingHeartbeat":
        stepCases.push(
          { label: "StoppingHeartbeat (scope closing, work stopping)", input: O.StoppingHeartbeat(), now: 1_000, base: { state: S.Leaving({ stopping: true, stuck: false }), closing: true } },
          { label: "StoppingHeartbeat (scope closing, work stuck)", input: O.StoppingHeartbeat(), now: 6_000, base: { state: leavingStuck, closing: true, stuckSince: 5_000 } },
          { label: "StoppingHeartbeat (not closing)", input: O.StoppingHeartbeat(), now: 1_000, base: { state: S.Leaving({ stopping: true, stuck: false }) } },
          { label: "RenewalReplied (no row, scope closing, work stopping)", input: O.RenewalReplied({ term: 1, sentAt: 1_000, receivedAt: 1_010, reply: R.NoRow() }), now: 1_010, base: { state: S.Leaving({ stopping: true, stuck: false }), closing: true } }
        )
        break
    }
  }
  stepCases.push(
    { label: "Renewed (earlier term)", input: E.Renewed({ view: view(6, false), term: 0 }), now: 1_000 },
    { label: "Renewed (all acked, someone expired, after reapAfter)", input: E.Renewed({ view: { ...view(5, true), expired: true } }), now: 1_000, base: { state: S.Awaiting(slot(5)) } },
    { label: "Renewed (all acked, someone expired, sent before the last reap)", input: E.Renewed({ view: { ...view(5, true), expired: true }, sentAt: 800 }), now: 1_000, base: { state: S.Awaiting(slot(5)), reapSentAt: 900 } },
    { label: "Renewed (all acked, someone expired, before reapAfter)", input: E.Renewed({ view: { ...view(5, true), expired: true } }), now: 1_000, base: { state: S.Awaiting(slot(5)), reapAfter: 5_000 } },
    { label: "Renewed (all acked, past the deadline)", input: E.Renewed({ view: view(5, true) }), now: 8_000, base: { state: S.Awaiting(slot(5)) } },
    { label: "Renewed (all acked, a renewal sent before the latest that acknowledged the group's epoch)", input: E.Renewed({ view: view(5, true), renewal: 6 }), now: 1_000, base: { state: S.Awaiting(slot(5)), ackingFrom: 7 } },
    { label: "Gone (early)", input: E.Gone({ early: true }), now: 1_000, base: { state: S.Awaiting(slot(5)) } },
    { label: "JoinFailed (the 3rd in a row)", input: E.JoinFailed({ reason: "timeout" }), now: 0, base: { state: S.Joining(), deadline: undefined, joinFailures: 2 } },
    { label: "StopTimedOut (first)", input: E.StopTimedOut(), now: 300, base: { state: S.Renegotiating({ ...slot(5), next: slot(6), stuck: false }) } },
    { label: "ScopeClosing", input: E.ScopeClosing(), now: 1_000 },
    { label: "StopTimedOut (scope closing)", input: E.StopTimedOut(), now: 6_000, base: { state: S.Leaving({ stopping: true, stuck: false }), closing: true } },
    { label: "RenewalReplied (scope closing)", input: O.RenewalReplied({ term: 1, sentAt: 6_000, receivedAt: 6_010, reply: R.NoRow() }), now: 6_010, base: { state: leavingStuck, closing: true, stuckSince: 5_000 } },
    { label: "WorkStopped (scope closing)", input: E.WorkStopped(), now: 7_000, base: { state: S.Leaving({ stopping: true, stuck: false }), closing: true } }
  )
  const numberFields = ["deadline", "term", "acked", "joinFailures", "barrierSince", "stuckSince", "reapAfter", "clockStepLogged", "fencedFor", "closing", "ackingFrom", "claimsIgnoredIn", "reapSentAt"]
  /** @param {unknown} x */
  const show = (x) => (x === undefined ? "-" : String(x))
  /** @param {Tagged} i */
  const showInstruction = (i) => {
    switch (i._tag) {
      case "Report":
        return `Report(${/** @type {Tagged} */ (i.event)._tag}${/** @type {Tagged} */ (i.event).early === true ? " early" : ""})`
      case "RetryJoinIn":
        return `RetryJoinIn(${i.millis} ms)`
      case "Measure":
        return `Measure(${i.metric})`
      case "Log":
        return `Log(${i.level})`
      case "HoldUntilStopped":
        return `HoldUntilStopped(every ${i.everyMillis} ms)`
      case "LeaveRetried":
        return `LeaveRetried(every ${i.everyMillis} ms)`
      case "Renew":
        return i.stuck === true ? "Renew(stuck)" : "Renew"
      case "StartSlot":
      case "RetakeSlot":
        return `${i._tag}(${i.slot}@${i.generation})`
      case "StopSlots":
        return `StopSlots(${/** @type {Array<{ slot: number, generation: number }>} */ (i.slots).map((p) => `${p.slot}@${p.generation}`).join(" ")})`
      case "ReleaseSlots":
        return `ReleaseSlots(${/** @type {Array<{ slot: number, generation: number }>} */ (i.stopped).map((p) => `${p.slot}@${p.generation}`).join(" ")})`
      default:
        return i._tag
    }
  }
  const stepTable = [
    "| input | member before | changes | instructions |",
    "| --- | --- | --- | --- |",
    ...stepCases.map(({ base, input, label, now }) => {
      const before = { ...member, ...base }
      const [after, instructions] = Transition.step(before, input, now)
      const changes = numberFields
        .filter((f) => after[f] !== before[f])
        .map((f) => `${f}: ${show(before[f])} -> ${show(after[f])}`)
      if (after.state !== before.state) changes.push(`state: ${nodeOf(before.state).name} -> ${nodeOf(after.state).name}`)
      const given = Object.entries(base ?? {}).filter(([k]) => k !== "state").map(([k, v]) => `${k} ${show(v)}`)
      return `| ${label} at ${now} | ${[nodeOf(before.state).name, ...given].join(", ")} | ${changes.join("; ") || "-"} | ${
        instructions.map(showInstruction).join(", ") || "-"
      } |`
    })
  ]

  // Static membership: `Transition.step` on a member with an instance id ("w1"). Its state machine is
  // the one above; what differs is what `step` makes of the commands (a graceful leave releases the
  // row instead of deleting it), and the wait for an instance id that a live member holds
  // (`InstanceBusy`): the `waiting` flag (`instanceBusyLogged`), said once, its waiter row for
  // `status` written at every retry and cleared when the wait ends. Drawn: every edge of a static
  // member whose instructions differ from those of the same member without an instance id, every
  // `InstanceBusy` and takeover, and every edge from a waiting member that does something.
  /** @param {Tagged} state @param {boolean} waiting */
  const staticNode = (state, waiting) => {
    const n = nodeOf(state)
    return waiting ? { id: `${n.id}_waiting`, name: `${n.name} (waiting)` } : n
  }
  /** @param {Tagged} state @param {string | undefined} instanceId @param {boolean} waiting */
  const memberIn = (state, instanceId, waiting) => ({
    ...Transition.initialMember(timing, instanceId),
    state,
    term: 1,
    acked: 5,
    deadline: Transition.holdsLease(state) ? 8_000 : undefined,
    clockReading: { sentAt: 0, database: 1_000, roundTrip: 10 },
    ...(instanceId === undefined ? {} : { instanceBusyLogged: waiting })
  })
  /** @type {Array<{ state: Tagged, waiting: boolean }>} */
  const staticStates = [
    ...states.map((state) => ({ state, waiting: false })),
    { state: S.Joining(), waiting: true },
    { state: S.Lost(), waiting: true }
  ]
  /** @type {Array<{ from: string, fromName: string, to: string, toName: string, label: string, instructions: string }>} */
  const staticEdges = []
  for (const { state, waiting } of staticStates) {
    const from = staticNode(state, waiting)
    const events = [...eventsFor(state)]
    if (state._tag === "Joining" || state._tag === "Lost") {
      events.push({
        label: "Joined (takeover: same epoch, all acked)",
        event: E.Joined({ view: { ...view(5, true), takenOver: true }, sentAt: 0, receivedAt: 5 })
      })
    }
    for (const { event, label } of events) {
      const [after, instructions] = Transition.step(memberIn(state, "w1", waiting), event, 10)
      const [, dynamic] = Transition.step(memberIn(state, undefined, false), event, 10)
      const shown = instructions.map(showInstruction).join(", ")
      const afterWaiting = after.instanceBusyLogged === true
      const same = JSON.stringify(after.state) === JSON.stringify(state) && afterWaiting === waiting
      if (same && instructions.length === 0) continue
      const differs = shown !== dynamic.map(showInstruction).join(", ")
      if (!differs && !waiting && event._tag !== "InstanceBusy" && !label.startsWith("Joined (takeover")) continue
      const to = staticNode(after.state, afterWaiting)
      staticEdges.push({ from: from.id, fromName: from.name, to: to.id, toName: to.name, label, instructions: shown })
    }
  }
  const staticNodes = [...new Map(staticEdges.flatMap((e) => [[e.from, e.fromName], [e.to, e.toName]])).entries()]
  const staticMermaid = [
    "stateDiagram-v2",
    "  direction LR",
    ...staticNodes.filter(([id, name]) => id !== name).map(([id, name]) => `  state "${name}" as ${id}`),
    ...staticEdges.map((e) => `  ${e.from} --> ${e.to} : ${e.label}${e.instructions === "" ? "" : ` / ${e.instructions}`}`)
  ]
  const staticTable = [
    "| state | event | next state | instructions |",
    "| --- | --- | --- | --- |",
    ...staticEdges.map((e) => `| ${e.fromName} | ${e.label} | ${e.toName} | ${e.instructions === "" ? "-" : e.instructions} |`)
  ]

  // Slots mode: the same state machine, with views that carry the member's slots (4 slots; this
  // member works 0 and 1 at generation 1, and the view below gives 1 away and 2 to it). The epoch is
  // no barrier: `Renewed` never leads to `Renegotiating` nor `Awaiting`, and the slots follow the views.
  /** @param {number} epoch @param {Array<[number, number, boolean]>} held @param {Array<number>} pending */
  const slotView = (epoch, held, pending) => ({
    ...view(epoch, false),
    acked: epoch - 1,
    slots: { count: 4, held: held.map(([slot, generation, owned]) => ({ slot, generation, owned })), pending }
  })
  /** @param {Array<[number, number]>} working @param {Array<[number, { generation: number, release: boolean }]>} stopping @param {Array<[number, { generation: number, uncertain: boolean }]>} inflight */
  const holdings = (working, stopping = [], inflight = []) => ({
    count: 4,
    working: new Map(working),
    stopping: new Map(stopping),
    inflight: new Map(inflight),
    viewsFrom: Number.NEGATIVE_INFINITY
  })
  /** @param {{ count: number, working: Map<number, number>, stopping: Map<number, { generation: number, release: boolean }>, inflight: Map<number, { generation: number, uncertain: boolean }> } | undefined} h */
  const showHoldings = (h) =>
    h === undefined ? "-" : `working ${[...h.working].map(([s, g]) => `${s}@${g}`).join(" ") || "none"}; stopping ${
      [...h.stopping].map(([s, x]) => `${s}@${x.generation}${x.release ? "" : " (fence)"}`).join(" ") || "none"
    }; released ${[...h.inflight].map(([s, x]) => `${s}@${x.generation}${x.uncertain ? "?" : ""}`).join(" ") || "none"}`
  const working01 = holdings([[0, 1], [1, 1]])
  const slotCases = [
    { label: "Joined (slots view: holds 0, 1; owns 2, held by another)", input: E.Joined({ view: slotView(7, [[0, 1, true], [1, 1, true]], [2]), sentAt: 0, receivedAt: 10 }), now: 10, base: { state: S.Joining(), deadline: undefined, term: 0 } },
    { label: "Renewed (slots view, newer epoch: 1 given away, 2 held)", input: E.Renewed({ view: slotView(6, [[0, 1, true], [1, 1, false], [2, 3, true]], []) }), now: 1_000, base: { slots: working01 } },
    { label: "Renewed (slots view, past the deadline)", input: E.Renewed({ view: slotView(6, [[0, 1, true], [1, 1, true], [2, 3, true]], []) }), now: 8_000, base: { slots: working01 } },
    { label: "Renewed (slots view: slot 1 held by another)", input: E.Renewed({ view: slotView(6, [[0, 1, true]], [1]) }), now: 1_000, base: { slots: working01 } },
    { label: "WorkStopped (refusing a view)", input: E.WorkStopped(), now: 1_500, base: { state: S.Fenced({ ...slot(5), stopping: true, stuck: false }), slots: holdings([]), refusing: true } },
    { label: "Renewed (slots view, newer epoch, while refusing a view)", input: E.Renewed({ view: slotView(6, [[0, 1, true], [1, 1, false], [2, 3, true]], []) }), now: 1_200, base: { state: S.Fenced({ ...slot(5), stopping: true, stuck: false }), slots: holdings([]), refusing: true } },
    { label: "Renewed (slots view, sent before the last release's reply)", input: E.Renewed({ view: slotView(6, [[0, 1, true], [1, 1, true], [2, 3, true]], []), sentAt: 900 }), now: 1_000, base: { slots: { ...working01, viewsFrom: 950 } } },
    { label: "Renewed (slots view: released slot 2 back, same generation)", input: E.Renewed({ view: slotView(6, [[0, 1, true], [1, 1, true], [2, 3, true]], []) }), now: 1_000, base: { slots: holdings([[0, 1], [1, 1]], [], [[2, { generation: 3, uncertain: true }]]) } },
    { label: "Renewed (slots view: released slot 2 back, higher generation)", input: E.Renewed({ view: slotView(6, [[0, 1, true], [1, 1, true], [2, 4, true]], []) }), now: 1_000, base: { slots: holdings([[0, 1], [1, 1]], [], [[2, { generation: 3, uncertain: true }]]) } },
    { label: "DeadlinePassed (slots mode)", input: E.DeadlinePassed(), now: 8_000, base: { slots: working01 } },
    { label: "SlotStopped (given away)", input: O.SlotStopped({ slot: 1, generation: 1 }), now: 1_000, base: { slots: holdings([[0, 1]], [[1, { generation: 1, release: true }]]) } },
    { label: "SlotStopped (after the fence)", input: O.SlotStopped({ slot: 1, generation: 1 }), now: 8_100, base: { state: S.Fenced({ ...slot(5), stopping: true, stuck: false }), slots: holdings([], [[1, { generation: 1, release: false }]]) } },
    { label: "SlotStopped (another generation)", input: O.SlotStopped({ slot: 1, generation: 0 }), now: 1_000, base: { slots: holdings([[0, 1]], [[1, { generation: 1, release: true }]]) } },
    { label: "SlotsReleased (answered)", input: O.SlotsReleased({ stopped: [{ slot: 1, generation: 1 }], released: [1], at: 1_100 }), now: 1_100, base: { slots: holdings([[0, 1]], [], [[1, { generation: 1, uncertain: false }]]) } },
    { label: "SlotsReleased (outcome unknown)", input: O.SlotsReleased({ stopped: [{ slot: 1, generation: 1 }], at: 1_100 }), now: 1_100, base: { slots: holdings([[0, 1]], [], [[1, { generation: 1, uncertain: false }]]) } },
    { label: "Gone (slots mode)", input: E.Gone({ early: false }), now: 1_000, base: { slots: working01 } }
  ]
  const slotTable = [
    "| input | member before | state after | slots after | instructions |",
    "| --- | --- | --- | --- | --- |",
    ...slotCases.map(({ base, input, label, now }) => {
      const before = { ...member, ...base }
      const [after, instructions] = Transition.step(before, input, now)
      return `| ${label} at ${now} | ${nodeOf(before.state).name}, ${showHoldings(before.slots)} | ${nodeOf(after.state).name} | ${
        showHoldings(after.slots)
      } | ${instructions.map(showInstruction).join(", ") || "-"} |`
    })
  ]

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
    "the interpreter (src/internal/membership/) carries events in (store replies, its timers, its work, the app)",
    "and runs the commands out. A notification is not an event: anyone who can connect can send one,",
    "so it only makes the member renew sooner, and decides nothing. The diagram below is drawn by",
    "running that function on one representative state per tag and flag (epoch 5; `Renegotiating`",
    "moves to 6; `stopping`: its work has not stopped yet; `stuck`: not within `stopTimeout`) and",
    "every event, with variants where the event's content matters: an edge is labelled",
    "`event / commands`. Events not drawn are ignored in that state: the state is kept and nothing is",
    "done. `Reap` is added to the commands of a renewal whose view reports an expired member (not",
    "drawn). `Alarm` logs an error and counts it (`modulo_group_alarms_total`).",
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
    "",
    "## Around the state machine: `Transition.step`",
    "",
    "The interpreter applies `Transition.step(member, input, now)`: `member` is the state plus the",
    "numbers the decisions need (the local lease deadline, the term, the acknowledged epoch, the join",
    "failures, since when the barrier and stuck work last, `reapAfter`, the last clock reading, the",
    "deadline the fence fired for, whether the scope is closing). An event goes through `transition`",
    "above; an observation (made by the lease keeper, the fence timer or the work runner, applied at",
    "once) only changes the numbers and reports events to the driver. When the member's scope closes,",
    "its loops have stopped and the final leave runs the instructions of `ScopeClosing` and what",
    "follows: while the work stops it keeps the lease (a `StoppingHeartbeat` a heartbeat after the last",
    "renewal that renewed, or at once, then every heartbeat, each renewing), past the stop timeout it",
    "holds the barrier itself (`HoldUntilStopped`: a `StuckHeartbeat` at once and every heartbeat, each",
    "alarming and renewing); the replies are ignored but for a row found gone while the work may run",
    "(an alarm), and it retries the delete within the statement timeout (`LeaveRetried`). Below, a",
    "member assigned in epoch 5, term 1,",
    "deadline 8000 (lease 10 s, fence margin 2 s, heartbeat 1 s), its last clock reading at 0 with the",
    "database at 1000; times in ms of the member's clock.",
    "",
    ...stepTable,
    "",
    "## Slots mode: a member's slots",
    "",
    "In slots mode ([slots.md](slots.md)) the views of joins and renewals carry the member's slots:",
    "those it holds (each at its generation, and whether it still owns it) and those it owns but does",
    "not hold yet. The state machine above still runs, but the epoch is no barrier: a slots-mode view",
    "takes `Joining`, `Awaiting` and a `Fenced` member whose work has stopped straight to `Assigned`,",
    "and `Assigned` stays `Assigned` at a newer epoch (no `StopWork`, no `Ack`). Beside the state,",
    "`Transition.step` keeps the member's slots (`Member.slots`: working, stopping, released with an",
    "unanswered or unknown outcome, marked `?`) and decides per slot (src/internal/slots/holdings.ts):",
    "a slot starts (`StartSlot`) only when the view says this member holds and owns it, and only while",
    "assigned with the deadline ahead; a worked slot given away is stopped alone (`StopSlots`) and",
    "released (`ReleaseSlots`) only after `SlotStopped`; a held slot neither worked nor owned is released",
    "at once; a slot released with an unknown outcome that comes back at the same generation is retaken",
    "first (`RetakeSlot`); a view that contradicts a worked slot is refused (stop everything, rejoin); the",
    "deadline stops every slot, none released for it. The member of the table above (assigned in epoch 5,",
    "deadline 8000), 4 slots; `s@g`: slot s at generation g.",
    "",
    ...slotTable,
    "",
    "## Static membership: a member with an instance id",
    "",
    "A member started with `instanceId` ([static-membership.md](static-membership.md)) runs the same",
    "state machine; `Transition.step` differs in two ways. A graceful leave **releases** its row",
    "instead of deleting it (`Release`: the row keeps its index, its lease ends, the epoch does not",
    "change; at scope close `LeaveRetried` releases too). And a join that finds its instance id held by",
    "a live member (`InstanceBusy`) changes nothing and **waits**: the member keeps its state with the",
    "flag `waiting` (`Member.instanceBusyLogged`), says so once (`Log(Warning)`), writes its waiter row",
    "for `status` at every retry (`RecordWaiting`: display only, nothing in the protocol reads it) and",
    "retries with the join backoff; the wait ends with a successful join (a **takeover** of the released",
    "or expired row: same index, same epoch, everyone acknowledged, so it starts at once), a leave or the",
    "scope's close, each of which deletes the waiter row first (`ClearWaiting`). Drawn below: the edges",
    "of a static member (instance id `w1`, the member of the table above in each state) whose",
    "instructions differ from a member's without an instance id, every `InstanceBusy` and takeover, and",
    "every edge of a waiting member that does something; the rest is the diagram above.",
    "",
    "```mermaid",
    ...staticMermaid,
    "```",
    "",
    ...staticTable,
    "",
    "The row of a static member, as the store keeps it (`status` shows these states; tested by",
    "test/support/StoreContract.ts on both stores and by test/static/): `live` (its lease runs),",
    "`released` (its member left gracefully: lease ended, index kept), `held` (its lease ran out: a",
    "crash or a hang; index kept). A join with its instance id takes a released or held row over (a",
    "new member id, a fresh lease); a live one it never takes (`InstanceBusy`). Reaping deletes a row",
    "once its lease and its `rejoinGrace` have both run out, and the group renegotiates as after a leave.",
    "",
    "```mermaid",
    "stateDiagram-v2",
    "  direction LR",
    "  [*] --> live : join (no row of this instance id) / insert, new epoch",
    "  live --> live : renewal / lease extended",
    "  live --> released : release (graceful leave, work stopped) / same epoch",
    "  live --> held : lease runs out (crash, hang)",
    "  released --> live : join with the instance id (takeover) / same index, same epoch",
    "  held --> live : join with the instance id (takeover) / same index, same epoch",
    "  released --> [*] : rejoinGrace runs out / reaped, new epoch",
    "  held --> [*] : rejoinGrace runs out / reaped, new epoch",
    "  live --> live : join with the instance id while live / InstanceBusy: the joiner waits",
    "```",
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
