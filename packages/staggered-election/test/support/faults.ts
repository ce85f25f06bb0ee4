/**
 * Faults for the FastSim suites beyond the network's: process pauses (`withPause`, with
 * reads checked for staleness), forged traffic from members' addresses (`withForgery`),
 * clock drift (`withDrift`), and the broken lease variant (`withoutLeaseWait`). See
 * `Pauses.fastsim.test.ts` for what each means.
 */
import { randomBytes } from "node:crypto"
import { Authentication, type Machine as M } from "@understudy/machine"
import * as Machine from "../../src/Machine.ts"
import { type Client, codec, faultsEndMs, type Msg, nodes, type Req } from "./invariants.ts"

export type Election = Machine.StaggeredElection<number, Req, number>
type In = M.Input<Msg, Machine.Command<Req>>

const resumeTimer = "pause-resume"

export interface Pause {
  readonly node: string
  readonly fromMs: number
  readonly toMs: number
}

/** One pause per schedule, derived from the seed (deterministic, so a seed replays). */
export const pauseOf = (seed: number): Pause => {
  const node = nodes[seed % nodes.length]!
  const fromMs = 300 + ((seed * 7_919) % 800)
  const toMs = Math.min(faultsEndMs, fromMs + 200 + ((seed * 104_729) % 800))
  return { node, fromMs, toMs }
}

export const withPause = (machine: Election, pause: Pause, client: Client) => {
  const backlog = new Map<string, Array<In>>()
  const counts = { paused: 0, mastersResumedBehind: 0, readsConfirmed: 0, readsAtOnce: 0 }
  // Per read: the highest answer (the counter's value) the client had when it was issued.
  const reads = new Map<number, { readonly node: string; readonly seen: number }>()
  let readId = 0
  const highestAnswer = () => Math.max(0, ...client.answered.values())
  const checkReads = (
    self: string,
    result: M.Result<Machine.State<number, Req, number>, Msg, Machine.Event<number>>,
  ) => {
    for (const output of result.outputs) {
      if (output._tag !== "Emit" || output.event._tag !== "ReadConfirmed") continue
      const read = reads.get(output.event.readId)
      if (read === undefined || read.node !== self) throw new Error(`unknown read confirmed`)
      reads.delete(output.event.readId)
      counts.readsConfirmed++
      if (result.state.replica.state < read.seen) {
        throw new Error(
          `stale read at ${self}: confirmed with ${result.state.replica.state}, ${read.seen} was answered before it`,
        )
      }
    }
    return result
  }
  /** A step, then (on a timer at a master) a read issued. */
  const live = (state: Machine.State<number, Req, number>, input: In) => {
    const result = checkReads(state.self, machine.step(state, input))
    if (input._tag !== "TimerFired" || result.state.role !== "master") return result
    const id = ++readId
    reads.set(id, { node: state.self, seen: highestAnswer() })
    // Every other time, two reads together (`ReadMany`: one round for both).
    const pair = id % 2 === 0 ? ++readId : undefined
    if (pair !== undefined) reads.set(pair, { node: state.self, seen: highestAnswer() })
    const confirmedBefore = counts.readsConfirmed
    const read = checkReads(
      state.self,
      machine.step(result.state, {
        _tag: "Command",
        command:
          pair === undefined
            ? { _tag: "Read", readId: id }
            : { _tag: "ReadMany", readIds: [id, pair] },
        nowMs: input.nowMs,
      }),
    )
    // Confirmed in the step that asked: no round trip, so by a lease.
    counts.readsAtOnce += counts.readsConfirmed - confirmedBefore
    return { state: read.state, outputs: [...result.outputs, ...read.outputs] }
  }
  const frozen: Election = {
    init: (context) => {
      backlog.delete(context.self)
      return machine.init(context)
    },
    step: (state, input) => {
      const self = state.self
      if (input._tag === "TimerFired" && input.timer === resumeTimer) {
        const waiting = backlog.get(self) ?? []
        backlog.delete(self)
        if (
          state.role === "master" &&
          waiting.some((item) => item._tag === "Receive" && (item.message.epoch ?? 0) > state.epoch)
        ) {
          counts.mastersResumedBehind++
        }
        let current = state
        const outputs: Array<M.Output<Msg, Machine.Event<number>>> = []
        for (const item of waiting) {
          const result = live(current, { ...item, nowMs: input.nowMs })
          current = result.state
          outputs.push(...result.outputs)
        }
        return { state: current, outputs }
      }
      if (self === pause.node && input.nowMs >= pause.fromMs && input.nowMs < pause.toMs) {
        const waiting = backlog.get(self) ?? []
        backlog.set(self, [...waiting, input])
        if (waiting.length > 0) return { state, outputs: [] }
        counts.paused++
        return {
          state,
          outputs: [{ _tag: "SetTimer", timer: resumeTimer, afterMs: pause.toMs - input.nowMs }],
        }
      }
      return live(state, input)
    },
  }
  return { machine: frozen, counts }
}

/** A message as it crossed the wire: sealed bytes (what the Runner sends and opens). */
interface Sealed {
  readonly _tag: "Sealed"
  readonly bytes: Uint8Array
}

interface Captured {
  readonly from: string
  readonly to: string
  readonly bytes: Uint8Array
}

const forgeTimer = "forge"
const forgeEveryMs = 400
const sealEvery = 64
const capturedMax = 64

/** A declaration at an epoch no honest term reaches, encoded once. */
const forgedDeclare: Uint8Array = (() => {
  const encoded = codec.encode({
    _tag: "Declare",
    epoch: Machine.epochOf(Machine.termMax - 2, 1),
    index: 1,
  })
  if (encoded._tag === "Failure") throw new Error("the forged declaration does not encode")
  return encoded.success
})()

/** What the attacker's datagrams met at the receivers, summed over a suite. */
export const forgery = {
  sent: 0,
  accepted: 0,
  dropped: {} as Record<string, number>,
  genuineSealed: 0,
  genuineDropped: {} as Record<string, number>,
}

/**
 * The machine with a wire and an attacker (see the module's comment). `authentication`: the
 * group's (keyed) or `Authentication.insecure`. A forged datagram that gets through is
 * counted in `forgery.accepted` (and not given to the machine: the suite fails on the count).
 */
export const withForgery = (
  machine: Election,
  authentication: Authentication.Authentication,
  random: () => number,
): Election => {
  const sealers = new Map<string, Authentication.Sealer>()
  const captured: Array<Captured> = []
  const guessed = Authentication.keyed(new Uint8Array(randomBytes(32)))
  const forgedSealers = new Map<string, Authentication.Sealer>()
  const forgedSealer = (member: string) => {
    let found = forgedSealers.get(member)
    if (found === undefined) {
      found = Authentication.sealer(guessed, member, 0)
      forgedSealers.set(member, found)
    }
    return found
  }
  let sends = 0
  const seal = (
    self: string,
    nowMs: number,
    outputs: ReadonlyArray<M.Output<Msg, Machine.Event<number>>>,
  ) =>
    outputs.map((output) => {
      if (output._tag !== "Send" || ++sends % sealEvery !== 0) return output
      const encoded = codec.encode(output.message)
      if (encoded._tag === "Failure") throw new Error(`does not encode: ${encoded.failure}`)
      const bytes = sealers.get(self)!.seal(output.to, nowMs, encoded.success)
      forgery.genuineSealed++
      const sealed: Sealed = { _tag: "Sealed", bytes }
      return { ...output, message: sealed as unknown as Msg }
    })
  const pick = <A>(items: ReadonlyArray<A>): A | undefined =>
    items.length === 0 ? undefined : items[Math.floor(random() * items.length)]
  /** The attacker's datagrams to `self` at `nowMs`, each from a member's address. */
  const forged = (self: string, nowMs: number): Array<{ from: string; bytes: Uint8Array }> => {
    const out: Array<{ from: string; bytes: Uint8Array }> = []
    const toSelf = captured.filter((c) => c.to === self)
    const replay = pick(toSelf)
    if (replay !== undefined) {
      out.push({ from: replay.from, bytes: replay.bytes })
      // The same payload and MAC with a fresh counter.
      const bumped = Uint8Array.from(replay.bytes)
      new DataView(bumped.buffer).setBigUint64(1, BigInt(Math.floor(nowMs * 1000)))
      out.push({ from: replay.from, bytes: bumped })
    }
    const elsewhere = pick(captured.filter((c) => c.to !== self && c.from !== self))
    if (elsewhere !== undefined) out.push({ from: elsewhere.from, bytes: elsewhere.bytes })
    // A declaration at an epoch no honest term reaches, under a guessed key.
    const member = pick(nodes.filter((node) => node !== self))!
    out.push({ from: member, bytes: forgedSealer(member).seal(self, nowMs, forgedDeclare) })
    // And the same declaration as an insecure group's datagram (no MAC at all).
    out.push({ from: member, bytes: forgedDeclare })
    return out
  }
  return {
    init: (context) => {
      sealers.set(context.self, Authentication.sealer(authentication, context.self, context.nowMs))
      const result = machine.init(context)
      return {
        state: result.state,
        outputs: [
          ...seal(context.self, context.nowMs, result.outputs),
          { _tag: "SetTimer", timer: forgeTimer, afterMs: forgeEveryMs },
        ],
      }
    },
    step: (state, input) => {
      const self = state.self
      const sealer = sealers.get(self)!
      if (input._tag === "TimerFired" && input.timer === forgeTimer) {
        for (const { from, bytes } of forged(self, input.nowMs)) {
          forgery.sent++
          const opened = sealer.open(from, input.nowMs, bytes)
          if ("dropped" in opened) {
            forgery.dropped[opened.dropped] = (forgery.dropped[opened.dropped] ?? 0) + 1
          } else {
            forgery.accepted++
          }
        }
        return {
          state,
          outputs: [{ _tag: "SetTimer", timer: forgeTimer, afterMs: forgeEveryMs }],
        }
      }
      if (input._tag === "Receive" && (input.message as { _tag: string })._tag === "Sealed") {
        const bytes = (input.message as unknown as Sealed).bytes
        const opened = sealer.open(input.from, input.nowMs, bytes)
        if ("dropped" in opened) {
          // A duplicate the network made, or traffic from before this server started.
          forgery.genuineDropped[opened.dropped] = (forgery.genuineDropped[opened.dropped] ?? 0) + 1
          return { state, outputs: [] }
        }
        // Captured once delivered: what the attacker replays was accepted already.
        captured.push({ from: input.from, to: self, bytes })
        if (captured.length > capturedMax) captured.shift()
        const decoded = codec.decode(opened.payload)
        if (decoded._tag === "Failure") throw new Error(`does not decode: ${decoded.failure}`)
        const result = machine.step(state, { ...input, message: decoded.success })
        return { state: result.state, outputs: seal(self, input.nowMs, result.outputs) }
      }
      const result = machine.step(state, input)
      return { state: result.state, outputs: seal(self, input.nowMs, result.outputs) }
    },
  }
}

/**
 * Clock drift: every server's clock runs at its own rate, `1 - drift` or `1 + drift` (half
 * the group each way, which half by the seed): the machine sees `nowMs * rate` and its
 * timers fire after `afterMs / rate` of simulated time (to the next whole millisecond: the
 * simulators step their clocks per distinct instant).
 */
export const withDrift = (machine: Election, drift: number, seed: number): Election => {
  const rateOf = (self: string) => ((nodes.indexOf(self) + seed) % 2 === 0 ? 1 - drift : 1 + drift)
  const local = (
    self: string,
    result: M.Result<Machine.State<number, Req, number>, Msg, Machine.Event<number>>,
  ) => ({
    state: result.state,
    outputs: result.outputs.map((output) =>
      output._tag === "SetTimer"
        ? { ...output, afterMs: Math.ceil(output.afterMs / rateOf(self)) }
        : output,
    ),
  })
  return {
    init: (context) =>
      local(
        context.self,
        machine.init({ ...context, nowMs: context.nowMs * rateOf(context.self) }),
      ),
    step: (state, input) =>
      local(state.self, machine.step(state, { ...input, nowMs: input.nowMs * rateOf(state.self) })),
  }
}

/**
 * The broken variant: a new master that does not wait out its predecessors' leases — its
 * own grants forgotten, and every sync reply saying its sender granted none for ages.
 */
export const withoutLeaseWait = (machine: Election): Election => ({
  init: machine.init,
  step: (state, input) =>
    machine.step(
      { ...state, grantedMs: Number.NEGATIVE_INFINITY },
      input._tag === "Receive" && input.message._tag === "SyncReply"
        ? { ...input, message: { ...input.message, grantedAgoMs: 1e12 } }
        : input,
    ),
})
