/**
 * Bad input against the staggered election, at three levels:
 * (a) the wire codec: random bytes, random JSON, truncated and mutated messages decode to a
 *     `CodecError` result, never a throw;
 * (b) the machine: for a master, a backup and a waiting server that all hold a log, forged
 *     messages (unknown or own sender, wrong or absurd index, stale epoch, too many entries,
 *     absurd positions) give the typed `Ignored` event, or the protocol's typed refusal, and
 *     leave the state as it was;
 * (c) the driver: a running 3-server group on SimNet under the TestClock (a stall of a loaded
 *     machine cannot fire its 100 ms inquiry time-out between two checks), sprayed with
 *     random datagrams and forged-but-decodable messages on every server's port, keeps its
 *     master and its epoch and keeps answering writes. Forgeries from a live member's own
 *     address would be UDP source spoofing; (b) covers what a forged member identity can do.
 */
import { describe, expect, it } from "@effect/vitest"
import { Authentication, Machine as M } from "@understudy/machine"
import { MemoryStore, NameServer } from "@understudy/store"
import { FastSim } from "@understudy/testkit"
import { Address, Datagram, SimNet, TransportError } from "@understudy/transport"
import { Deferred, Effect, Layer, Option, References, Result, Schema } from "effect"
import * as fc from "fast-check"
import * as Machine from "../src/Machine.ts"
import * as Message from "../src/Message.ts"
import * as ServerGroup from "../src/ServerGroup.ts"
import { advance, driven } from "./support/clock.ts"

type Req = { readonly add: number }
type Msg = Message.Message<Req>
type St = Machine.State<number, Req, number>

const RequestSchema = Schema.Struct({ add: Schema.Int })
const codec = Message.codec(RequestSchema)
const encoder = new TextEncoder()

const isCodecError = (error: unknown) =>
  error instanceof TransportError.CodecError &&
  (error as { readonly _tag: string })._tag === "CodecError"

// ---------------------------------------------------------------------------------------
// Forged messages: every tag, any field values the codec admits (and some it does not).

const anyCount = fc.oneof(
  fc.nat({ max: 10 }),
  fc.nat(),
  fc.constantFrom(0, 4095, 4096, 2 ** 31, Number.MAX_SAFE_INTEGER),
)
const anyIndex = fc.oneof(
  fc.integer({ min: -5, max: 10 }),
  fc.constantFrom(-1, -(2 ** 31), 4095, 4096, 2 ** 31, Number.MAX_SAFE_INTEGER),
)
const anyEntry = fc.oneof(
  fc.record({ _tag: fc.constant("Noop" as const), seq: anyCount, epoch: anyCount }),
  fc.record({
    _tag: fc.constant("Request" as const),
    seq: anyCount,
    epoch: anyCount,
    clientId: fc.string({ maxLength: 8 }),
    requestId: anyCount,
    request: fc.record({ add: fc.integer({ min: -100, max: 100 }) }),
  }),
)

/** Any message, with its epoch and index drawn from the given arbitraries. */
const forged = (
  epoch: fc.Arbitrary<number>,
  index: fc.Arbitrary<number>,
  entries: fc.Arbitrary<ReadonlyArray<Message.Entry<Req>>> = fc.array(anyEntry, { maxLength: 4 }),
): fc.Arbitrary<Msg> =>
  fc.oneof(
    fc.record({
      _tag: fc.constant("Probe" as const),
      epoch,
      index,
      seq: anyCount,
      master: fc.option(fc.constantFrom("a", "b", "c", "zz"), { nil: null }),
      row: fc.dictionary(fc.constantFrom("a", "b", "c", "zz"), fc.nat({ max: 1_000 })),
      history: fc.boolean(),
    }),
    fc.record({
      _tag: fc.constant("ProbeReply" as const),
      epoch,
      index,
      seq: anyCount,
      master: fc.option(fc.constantFrom("a", "b", "c", "zz"), { nil: null }),
      role: fc.constantFrom("master" as const, "backup" as const, "waiting" as const),
      history: fc.boolean(),
    }),
    fc.record({ _tag: fc.constant("Declare" as const), epoch, index }),
    fc.record({ _tag: fc.constant("Revoke" as const), epoch, index, revokedIndex: anyIndex }),
    fc.record({
      _tag: fc.constant("Replicate" as const),
      epoch,
      index,
      prevSeq: anyCount,
      prevEpoch: anyCount,
      entries,
      commitSeq: anyCount,
    }),
    fc.record({
      _tag: fc.constant("Ack" as const),
      epoch,
      index,
      ok: fc.boolean(),
      lastSeq: anyCount,
      amnesiac: fc.boolean(),
      incarnation: anyCount,
    }),
    fc.record({ _tag: fc.constant("SyncRequest" as const), epoch, index, fromSeq: anyCount }),
    fc.record({
      _tag: fc.constant("SyncReply" as const),
      epoch,
      index,
      fromSeq: anyCount,
      entries,
      lastSeq: anyCount,
      lastEpoch: anyCount,
      complete: fc.boolean(),
      amnesiac: fc.boolean(),
      history: fc.boolean(),
    }),
  )

// ---------------------------------------------------------------------------------------
// (a) The codec.

describe("the message codec on bad bytes", () => {
  it("random bytes give a CodecError result, never a throw", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        const decoded = codec.decode(bytes)
        if (Result.isFailure(decoded)) expect(isCodecError(decoded.failure)).toBe(true)
        // Whatever does decode is a message the codec can encode again.
        else expect(Result.isSuccess(codec.encode(decoded.success))).toBe(true)
      }),
      { numRuns: 2_000 },
    )
  })

  it("random JSON gives a CodecError result, never a throw", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const decoded = codec.decode(encoder.encode(JSON.stringify(value)))
        expect(Result.isFailure(decoded)).toBe(true)
        if (Result.isFailure(decoded)) expect(isCodecError(decoded.failure)).toBe(true)
      }),
      { numRuns: 2_000 },
    )
  })

  it("a valid message truncated, or with one field replaced by random JSON, is a CodecError", () => {
    const valid = forged(fc.nat(), fc.nat({ max: 4095 })).filter((message) =>
      Result.isSuccess(codec.encode(message)),
    )
    fc.assert(
      fc.property(valid, fc.nat(), fc.jsonValue(), (message, cut, junk) => {
        const bytes = Result.getOrThrow(codec.encode(message))
        const truncated = bytes.slice(0, cut % bytes.length)
        const short = codec.decode(truncated)
        expect(Result.isFailure(short)).toBe(true)
        if (Result.isFailure(short)) expect(isCodecError(short.failure)).toBe(true)

        const fields = Object.keys(message).filter((key) => key !== "_tag")
        const field = fields[cut % fields.length]!
        const mutated = { ...message, [field]: junk }
        const decoded = codec.decode(encoder.encode(JSON.stringify(mutated)))
        if (Result.isFailure(decoded)) expect(isCodecError(decoded.failure)).toBe(true)
        // Junk that happens to fit the field's schema decodes to a well-formed message.
        else expect(Result.isSuccess(codec.encode(decoded.success))).toBe(true)
      }),
      { numRuns: 2_000 },
    )
  })

  it("well-formed messages with absurd values the schema forbids are CodecErrors", () => {
    const bad = [
      { _tag: "Declare", epoch: -1, index: 1 },
      { _tag: "Declare", epoch: 1, index: -1 },
      { _tag: "Declare", epoch: 1.5, index: 1 },
      { _tag: "Revoke", epoch: 1, index: 1 },
      { _tag: "Ack", epoch: 1, index: 1, ok: true, lastSeq: -3 },
      {
        _tag: "Replicate",
        epoch: 1,
        index: 1,
        prevSeq: 0,
        prevEpoch: 0,
        entries: {},
        commitSeq: 0,
      },
      {
        _tag: "Replicate",
        epoch: 1,
        index: 1,
        prevSeq: -1,
        prevEpoch: 0,
        entries: [],
        commitSeq: 0,
      },
      { _tag: "Probe", epoch: 1, index: 1, seq: 1, master: null, row: { a: -1 } },
      { _tag: "Nonsense", epoch: 1, index: 1 },
    ]
    for (const value of bad) {
      const decoded = codec.decode(encoder.encode(JSON.stringify(value)))
      expect(Result.isFailure(decoded), JSON.stringify(value)).toBe(true)
      if (Result.isFailure(decoded)) expect(isCodecError(decoded.failure)).toBe(true)
    }
  })
})

// ---------------------------------------------------------------------------------------
// (b) The machine.

// Capacities rank c first (index 1), then a (2), then b (3): index order is not name order.
const servers = [
  { id: "a", capacity: { cpu: 4, bandwidthMbps: 100 } },
  { id: "b", capacity: { cpu: 2, bandwidthMbps: 100 } },
  { id: "c", capacity: { cpu: 8, bandwidthMbps: 100 } },
]
const indexOf: Record<string, number> = { c: 1, a: 2, b: 3 }
const entriesPerMessageMax = 8
const config: Machine.Config<number, Req, number> = {
  servers,
  detectionPeriodMs: 50,
  inquiryTimeoutMs: 150,
  baseDelayMs: 40,
  initial: 0,
  apply: (state, request) => [state + request.add, state + request.add] as const,
  entriesPerMessageMax,
}
const machine = Machine.make(config)

/**
 * A settled group holding a log: three servers on FastSim, the master (c, index 1) given a
 * dozen requests; then a backup whose inquiry goes unanswered becomes a waiting server.
 */
const roles = (() => {
  let final: ReadonlyMap<string, St> = new Map()
  FastSim.run<St, Msg, Machine.Command<Req>, Machine.Event<number>>({
    machine,
    nodes: ["a", "b", "c"],
    seed: 7,
    durationMs: 1_200,
    link: { latency: { _tag: "Fixed", ms: 2 }, loss: 0, duplicate: 0, reorder: 0 },
    commands: Array.from({ length: 12 }, (_, i) => ({
      atMs: 400 + 20 * i,
      node: "c",
      command: {
        _tag: "Submit" as const,
        clientId: "client",
        requestId: i + 1,
        request: { add: 1 },
      },
    })),
    invariants: [
      {
        name: "capture",
        check: (view) => {
          if (view.final) final = new Map(view.states)
          return undefined
        },
      },
    ],
  })
  const master = final.get("c")!
  const backup = final.get("a")!
  // The backup's next detection tick sends an inquiry; it goes unanswered: waiting.
  const inquiring = machine.step(final.get("b")!, M.timerFired(Machine.detectTimer, 1_250)).state
  const waiting = machine.step(inquiring, M.timerFired(Machine.inquiryTimer, 1_400)).state
  return { master, backup, waiting }
})()

const roleCases = [
  ["master", roles.master],
  ["backup", roles.backup],
  ["waiting", roles.waiting],
] as const

const nowMs = 1_500

const ignoredOnly = (
  outputs: ReadonlyArray<M.Output<Msg, Machine.Event<number>>>,
  reason: string,
) =>
  outputs.length === 1 &&
  outputs[0]!._tag === "Emit" &&
  outputs[0]!.event._tag === "Ignored" &&
  outputs[0]!.event.reason === reason

describe("the machine on forged messages", () => {
  it("the fixtures: a master, a backup and a waiting server, each with a log", () => {
    expect(roles.master.role).toBe("master")
    expect(roles.backup.role).toBe("backup")
    expect(roles.backup.master).toBe("c")
    expect(roles.waiting.role).toBe("waiting")
    expect(roles.waiting.failed).toBe("c")
    for (const [, state] of roleCases) {
      expect(state.replica.log.length).toBeGreaterThanOrEqual(12)
      expect(state.replica.appliedSeq).toBeGreaterThan(0)
      expect(state.epoch).toBeGreaterThan(0)
    }
  })

  for (const [role, state] of roleCases) {
    describe(`a ${role}`, () => {
      it("ignores any message from a non-member, or claiming to come from itself", () => {
        const sender = fc.oneof(
          fc.string({ maxLength: 6 }).filter((id) => !(id in indexOf)),
          fc.constant(state.self),
        )
        fc.assert(
          fc.property(sender, forged(anyCount, anyIndex), (from, message) => {
            const result = machine.step(state, M.receive(from, message, nowMs))
            expect(ignoredOnly(result.outputs, "unknown-sender")).toBe(true)
            expect(result.state).toStrictEqual(state)
          }),
          { numRuns: 300 },
        )
      })

      it("ignores a Declare or Revoke from a non-member, whatever epoch it claims", () => {
        const declaration = fc.oneof(
          fc.record({ _tag: fc.constant("Declare" as const), epoch: anyCount, index: anyIndex }),
          fc.record({
            _tag: fc.constant("Revoke" as const),
            epoch: anyCount,
            index: anyIndex,
            revokedIndex: anyIndex,
          }),
        )
        fc.assert(
          fc.property(fc.constantFrom("d", "master", "", "c "), declaration, (from, message) => {
            // A newer epoch than anyone's: from a member it would win or be revoked.
            const newer = { ...message, epoch: state.epoch + 4096 * (1 + (message.epoch % 5)) }
            for (const candidate of [message, newer]) {
              const result = machine.step(state, M.receive(from, candidate, nowMs))
              expect(ignoredOnly(result.outputs, "unknown-sender")).toBe(true)
              expect(result.state).toStrictEqual(state)
            }
          }),
          { numRuns: 200 },
        )
      })

      it("ignores a member's message whose index is not the member's (negative, huge, another's)", () => {
        const peer = fc.constantFrom(...Object.keys(indexOf).filter((id) => id !== state.self))
        fc.assert(
          fc.property(peer, forged(anyCount, anyIndex), (from, message) => {
            fc.pre(message.index !== indexOf[from])
            const result = machine.step(state, M.receive(from, message, nowMs))
            expect(ignoredOnly(result.outputs, "wrong-index")).toBe(true)
            expect(result.state).toStrictEqual(state)
          }),
          { numRuns: 300 },
        )
      })

      it("ignores a member's message at a stale epoch (a stale probe is only answered)", () => {
        const peer = fc.constantFrom(...Object.keys(indexOf).filter((id) => id !== state.self))
        const stale = fc.nat({ max: state.epoch - 1 })
        fc.assert(
          fc.property(peer, forged(stale, fc.constant(0)), (from, raw) => {
            const message = { ...raw, index: indexOf[from]! }
            const result = machine.step(state, M.receive(from, message, nowMs))
            if (message._tag === "Probe") {
              // Answered with the current epoch, so its sender learns it; nothing changes here.
              expect(result.outputs).toHaveLength(1)
              const reply = result.outputs[0]!
              expect(reply._tag === "Send" && reply.message._tag === "ProbeReply").toBe(true)
              expect(reply._tag === "Send" && reply.message.epoch).toBe(state.epoch)
            } else {
              expect(ignoredOnly(result.outputs, "stale-epoch")).toBe(true)
            }
            expect(result.state).toStrictEqual(state)
          }),
          { numRuns: 300 },
        )
      })

      it("ignores a member's newer epoch that names no member or is absurdly large", () => {
        const peer = fc.constantFrom(...Object.keys(indexOf).filter((id) => id !== state.self))
        const members = Object.keys(indexOf).length
        const absurd = fc.oneof(
          // An epoch whose index part names no member.
          fc
            .integer({ min: Machine.termOf(state.epoch) + 1, max: 2 ** 20 })
            .chain((term) =>
              fc
                .integer({ min: members + 1, max: 4095 })
                .map((index) => Machine.epochOf(term, index)),
            ),
          // A term past `termMax`, or past exact arithmetic.
          fc.constantFrom(Machine.epochOf(Machine.termMax + 1, 1), Number.MAX_SAFE_INTEGER),
        )
        fc.assert(
          fc.property(peer, forged(absurd, fc.constant(0)), (from, raw) => {
            const message = { ...raw, index: indexOf[from]! }
            const result = machine.step(state, M.receive(from, message, nowMs))
            expect(ignoredOnly(result.outputs, "bad-epoch")).toBe(true)
            expect(result.state).toStrictEqual(state)
          }),
          { numRuns: 300 },
        )
      })

      it("ignores more entries than a message may carry, whatever the epoch", () => {
        const peer = fc.constantFrom(...Object.keys(indexOf).filter((id) => id !== state.self))
        const many = fc.array(anyEntry, {
          minLength: entriesPerMessageMax + 1,
          maxLength: entriesPerMessageMax + 20,
        })
        const bulky = forged(anyCount, fc.constant(0), many).filter(
          (message) => message._tag === "Replicate" || message._tag === "SyncReply",
        )
        fc.assert(
          fc.property(peer, bulky, (from, raw) => {
            const message = { ...raw, index: indexOf[from]! }
            const result = machine.step(state, M.receive(from, message, nowMs))
            expect(ignoredOnly(result.outputs, "too-large")).toBe(true)
            expect(result.state).toStrictEqual(state)
          }),
          { numRuns: 200 },
        )
      })
    })
  }

  it("a backup refuses a Replicate from its master at positions its log does not have", () => {
    const state = roles.backup
    const held = state.replica.log.length
    const absurd = fc.oneof(
      fc.integer({ min: -(2 ** 31), max: -1 }),
      fc.integer({ min: held + 1, max: Number.MAX_SAFE_INTEGER }),
    )
    fc.assert(
      fc.property(
        absurd,
        anyCount,
        fc.array(anyEntry, { maxLength: 4 }),
        anyCount,
        (prevSeq, prevEpoch, entries, commitSeq) => {
          const message: Msg = {
            _tag: "Replicate",
            epoch: state.epoch,
            index: indexOf.c!,
            prevSeq,
            prevEpoch,
            entries,
            commitSeq,
          }
          const result = machine.step(state, M.receive("c", message, nowMs))
          // The typed refusal: a negative Ack saying how far its log goes.
          expect(result.outputs).toHaveLength(1)
          const ack = result.outputs[0]!
          expect(ack._tag === "Send" && ack.to === "c" && ack.message._tag === "Ack").toBe(true)
          if (ack._tag === "Send" && ack.message._tag === "Ack") {
            expect(ack.message.ok).toBe(false)
            expect(ack.message.lastSeq).toBe(held)
          }
          expect(result.state).toStrictEqual(state)
        },
      ),
      { numRuns: 300 },
    )
  })

  it("a Replicate from a member that is not the master, or to a master, changes nothing", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(
          ["backup", "b"] as const,
          ["waiting", "a"] as const,
          ["master", "a"] as const,
        ),
        anyCount,
        anyCount,
        fc.array(anyEntry, { maxLength: 4 }),
        anyCount,
        ([role, from], prevSeq, prevEpoch, entries, commitSeq) => {
          const state = roles[role]
          const message: Msg = {
            _tag: "Replicate",
            epoch: state.epoch,
            index: indexOf[from]!,
            prevSeq,
            prevEpoch,
            entries,
            commitSeq,
          }
          const result = machine.step(state, M.receive(from, message, nowMs))
          expect(result.outputs).toEqual([])
          expect(result.state).toStrictEqual(state)
        },
      ),
      { numRuns: 300 },
    )
  })

  it("an Ack with absurd positions never moves a master past its own log", () => {
    const state = roles.master
    const held = state.replica.log.length
    fc.assert(
      fc.property(fc.constantFrom("a", "b"), fc.boolean(), anyCount, (from, ok, lastSeq) => {
        const message: Msg = {
          _tag: "Ack",
          epoch: state.epoch,
          index: indexOf[from]!,
          ok,
          lastSeq,
          amnesiac: false,
          incarnation: 0,
        }
        const result = machine.step(state, M.receive(from, message, nowMs))
        const after = result.state
        expect(after.role).toBe("master")
        expect(after.epoch).toBe(state.epoch)
        expect(after.replica.log).toStrictEqual(state.replica.log)
        expect(after.replica.commitSeq).toBeLessThanOrEqual(held)
        expect(after.replica.commitSeq).toBeGreaterThanOrEqual(state.replica.commitSeq)
        expect(after.leader!.matchSeq[from] ?? 0).toBeLessThanOrEqual(held)
        const next = after.leader!.nextSeq[from] ?? 1
        expect(next).toBeGreaterThanOrEqual(1)
        expect(next).toBeLessThanOrEqual(held + 1)
        for (const output of result.outputs) {
          if (output._tag === "Send" && output.message._tag === "Replicate") {
            expect(output.message.prevSeq).toBeGreaterThanOrEqual(0)
            expect(output.message.prevSeq).toBeLessThanOrEqual(held)
          }
        }
      }),
      { numRuns: 300 },
    )
  })

  it("an Ack or SyncReply to a server that is not a master changes nothing", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(["backup", "b"] as const, ["waiting", "a"] as const),
        forged(fc.constant(0), fc.constant(0)).filter(
          (message) => message._tag === "Ack" || message._tag === "SyncReply",
        ),
        ([role, from], raw) => {
          const state = roles[role]
          const message = { ...raw, epoch: state.epoch, index: indexOf[from]!, entries: [] }
          const result = machine.step(state, M.receive(from, message as Msg, nowMs))
          expect(result.outputs).toEqual([])
          expect(result.state).toStrictEqual(state)
        },
      ),
      { numRuns: 200 },
    )
  })
})

// ---------------------------------------------------------------------------------------
// (c) The driver.

type Server = ServerGroup.ServerGroup<number, Req, number>

const nameServer = NameServer.layer.pipe(Layer.provide(MemoryStore.layer))

/**
 * Starts `running` servers of a group of `configured` (the first ones; s1 is the most
 * capable, index 1) on a new SimNet, each a program of its own host `sN` at `udp://sN:7000`.
 * `attackFrom(host)` binds an endpoint on `host` (a member not started, or a stranger).
 */
const startGroup = (running: number, configured = running) =>
  Effect.gen(function* () {
    const names = yield* NameServer.NameServer
    const net = yield* SimNet.make({ link: { latency: SimNet.fixed(2) } })
    const ids = Array.from({ length: configured }, (_, i) => `s${i + 1}`)
    const addresses = Object.fromEntries(ids.map((id) => [id, Address.udp(id, 7000)]))
    const servers = new Map<string, Server>()
    for (const id of ids.slice(0, running)) {
      const started = yield* Deferred.make<Server>()
      yield* net.run(
        id,
        Effect.gen(function* () {
          const server = yield* ServerGroup.make<number, Req, number>({
            group: "fuzzed",
            self: id,
            servers: ids.map((server, i) => ({
              id: server,
              capacity: { cpu: 10 - i, bandwidthMbps: 100 },
            })),
            addresses,
            // Insecure on purpose: the forgeries below must reach the machine, which has to
            // refuse them on its own (with a key, the runner drops them before it).
            authentication: Authentication.insecure,
            request: RequestSchema,
            initial: 0,
            apply: (state, request) => [state + request.add, state + request.add] as const,
            detectionPeriod: 20,
            inquiryTimeout: 100,
            baseDelay: 50,
            floorDelay: 15,
            registrationTtl: 1_000,
            submitTimeout: 2_000,
          })
          yield* Deferred.succeed(started, server)
          yield* Effect.never
        }).pipe(Effect.provideService(NameServer.NameServer, names)),
      )
      servers.set(id, yield* driven(Deferred.await(started)))
    }
    const attackFrom = (host: string) =>
      Effect.gen(function* () {
        const bound = yield* Deferred.make<Datagram.Endpoint>()
        yield* net.run(
          host,
          Effect.gen(function* () {
            const datagram = yield* Datagram.Datagram
            yield* Deferred.succeed(bound, yield* datagram.bind(Address.udp(host, 7000)))
            yield* Effect.never
          }),
        )
        const endpoint = yield* driven(Deferred.await(bound))
        return (bytes: Uint8Array, to: Address.Udp) => endpoint.send(to, bytes)
      })
    return { running: servers, addresses: ids.map((id) => addresses[id]!), attackFrom }
  })

/** Polls until every server follows one registered master; bounded. */
const settled = (running: Map<string, Server>) =>
  Effect.gen(function* () {
    const nameServer = yield* NameServer.NameServer
    for (let i = 0; i < 400; i++) {
      const all = yield* Effect.forEach([...running.values()], (server) => server.status)
      const masters = all.filter((s) => s.role === "master")
      const holder = yield* nameServer.resolve("fuzzed")
      if (
        masters.length === 1 &&
        masters[0]!.serving &&
        all.every((s) => s.master === masters[0]!.self && s.epoch === masters[0]!.epoch) &&
        Option.isSome(holder) &&
        holder.value.holder === masters[0]!.self
      ) {
        return { master: masters[0]!, holderEpoch: holder.value.epoch }
      }
      yield* advance(25)
    }
    return yield* Effect.die(new Error("the group did not settle"))
  })

describe("a running group on forged datagrams", () => {
  it.effect(
    "keeps its master and epoch and keeps answering writes",
    () =>
      Effect.gen(function* () {
        const { running, addresses, attackFrom } = yield* startGroup(3)
        const before = yield* settled(running)
        const master = running.get(before.master.self)!
        let requestId = 0
        const write = () =>
          driven(master.submit({ clientId: "writer", requestId: ++requestId, request: { add: 1 } }))
        expect(yield* write()).toBe(1)

        const send = yield* attackFrom("attacker")

        // Forgeries claiming every member's index, at epochs from stale to far newer than
        // the master's: any of them accepted would change the master or the epoch.
        const epochs = fc.oneof(
          fc.nat({ max: before.master.epoch }),
          fc.integer({ min: before.master.epoch + 1, max: before.master.epoch + 4096 * 100 }),
        )
        const forgeries = fc
          .sample(forged(epochs, fc.integer({ min: 0, max: 4 })), { numRuns: 300, seed: 42 })
          .map((message) => codec.encode(message))
          .filter(Result.isSuccess)
          .map((encoded) => encoded.success)
        const junk = fc.sample(fc.uint8Array({ minLength: 0, maxLength: 1_500 }), {
          numRuns: 300,
          seed: 43,
        })
        expect(forgeries.length).toBeGreaterThan(250)

        let answered = 1
        for (let i = 0; i < 300; i++) {
          for (const address of addresses) {
            yield* send(forgeries[i % forgeries.length]!, address)
            yield* send(junk[i]!, address)
          }
          if (i % 30 === 29) {
            expect(yield* write()).toBe(++answered)
            yield* advance(5)
          }
        }

        const after = yield* settled(running)
        expect(after.master.self).toBe(before.master.self)
        expect(after.master.epoch).toBe(before.master.epoch)
        expect(after.holderEpoch).toBe(before.holderEpoch)
        for (const server of running.values()) {
          const state = yield* server.machineState
          expect(state.epoch).toBe(before.master.epoch)
          expect(state.master).toBe(before.master.self)
        }
        expect(yield* write()).toBe(answered + 1)
      }).pipe(
        Effect.scoped,
        Effect.provide(nameServer),
        // Every forged datagram is dropped with a warning: thousands of lines otherwise.
        Effect.provideService(References.MinimumLogLevel, "Error"),
      ),
    30_000,
  )
  it.effect(
    "forgeries from a configured member's address that fail its checks change nothing",
    () =>
      Effect.gen(function* () {
        // Four members configured, three running; the attacker holds s4's address, so its
        // datagrams reach the machines as s4's. Only forgeries the protocol can tell from
        // s4's own messages are sent: another member's index, or an epoch older than the
        // master's (a newer Declare from a real member is a real election).
        const { running, addresses, attackFrom } = yield* startGroup(3, 4)
        const before = yield* settled(running)
        const master = running.get(before.master.self)!
        let requestId = 0
        const write = () =>
          driven(master.submit({ clientId: "writer", requestId: ++requestId, request: { add: 1 } }))
        expect(yield* write()).toBe(1)
        const send = yield* attackFrom("s4")
        const wrongIndex = forged(
          fc.nat({ max: before.master.epoch + 4096 * 100 }),
          anyIndex.filter((index) => index !== 4),
        )
        const stale = forged(fc.nat({ max: before.master.epoch - 1 }), fc.constant(4))
        const forgeries = fc
          .sample(fc.oneof(wrongIndex, stale), { numRuns: 300, seed: 44 })
          .map((message) => codec.encode(message))
          .filter(Result.isSuccess)
          .map((encoded) => encoded.success)
        const junk = fc.sample(fc.uint8Array({ maxLength: 1_500 }), { numRuns: 300, seed: 45 })
        // Negative indexes do not encode (the codec refuses them): the machine tests cover them.
        expect(forgeries.length).toBeGreaterThan(150)

        let answered = 1
        for (let i = 0; i < 300; i++) {
          for (const address of addresses.slice(0, 3)) {
            yield* send(forgeries[i % forgeries.length]!, address)
            yield* send(junk[i]!, address)
          }
          if (i % 30 === 29) {
            expect(yield* write()).toBe(++answered)
            yield* advance(5)
          }
        }

        const after = yield* settled(running)
        expect(after.master.self).toBe(before.master.self)
        expect(after.master.epoch).toBe(before.master.epoch)
        expect(after.holderEpoch).toBe(before.holderEpoch)
        for (const server of running.values()) {
          const state = yield* server.machineState
          expect(state.epoch).toBe(before.master.epoch)
          expect(state.master).toBe(before.master.self)
        }
        expect(yield* write()).toBe(answered + 1)
      }).pipe(
        Effect.scoped,
        Effect.provide(nameServer),
        Effect.provideService(References.MinimumLogLevel, "Error"),
      ),
    30_000,
  )
})
