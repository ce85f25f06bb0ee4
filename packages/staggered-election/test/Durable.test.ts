/**
 * Durability: the records `changes` writes replay to the state they describe (appends,
 * overwritten suffixes, terms); the store on disk recovers what was persisted, through
 * compaction and a torn tail at every byte offset of its last record (a prefix of what was
 * persisted, never more); and the FastSim suite with every restart recovering its durable
 * state (as the driver persists it before sending) keeps the invariants, with restarted
 * servers counted again at once.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { FastSim, Seeds } from "@understudy/testkit"
import { Effect, HashMap, Schema } from "effect"
import * as fc from "fast-check"
import * as Durable from "../src/Durable.ts"
import * as Machine from "../src/Machine.ts"
import type * as Message from "../src/Message.ts"
import * as Replication from "../src/Replication.ts"
import * as Wal from "../src/Wal.ts"
import { base, type Config, nodes, type Req, runSchedule } from "./support/invariants.ts"

const RequestSchema = Schema.Struct({ add: Schema.Int })

const entry = (seq: number, epoch: number, add: number): Message.Entry<Req> => ({
  _tag: "Request",
  seq,
  epoch,
  clientId: "c",
  requestId: seq,
  request: { add },
})

/** A small deterministic generator (mulberry32), seeded per schedule. */
const generator = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

/** How a crash during a persist leaves the new bytes on disk. */
type DiskFault =
  /** The fsync never completed: none of the new bytes are there. */
  | "lost-tail"
  /** The write stopped part-way: a prefix of the new bytes. */
  | "torn"
  /** A prefix landed, the rest of the space the append took reads as zeros. */
  | "torn-zero-filled"

/**
 * Disk faults (`faults`: a generator, and the chance that a persist is cut by a crash): a
 * step whose records are being written is cut by a crash before its fsync completes, so
 * none of its messages went out and nobody was answered (the driver persists first); on
 * disk are the records synced before, then a prefix of the new bytes, torn anywhere, or
 * zero-filled past the tear. The server restarts at once from what `Wal.decode` recovers of
 * those bytes (a decode failure is a failed restart); what it recovered must be the synced
 * records and a prefix of the new ones, never more.
 */
interface DiskFaults {
  readonly random: () => number
  readonly chance: number
  readonly counts: {
    cut: number
    lostTail: number
    torn: number
    zeroFilled: number
    partial: number
  }
}

/** The chance that a persist (a step that writes records) is cut by a crash. */
const diskFaultChance = 0.004

const RecordCodec = Durable.recordSchema(RequestSchema)
const encodeRecord = Schema.encodeSync(RecordCodec)
const decodeRecord = Schema.decodeUnknownSync(RecordCodec)
const recordBytes = (record: Durable.Record<Req>) =>
  new TextEncoder().encode(encodeRecord(record) as string)
const concat = (parts: ReadonlyArray<Uint8Array>) => {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0))
  let at = 0
  for (const part of parts) {
    out.set(part, at)
    at += part.length
  }
  return out
}

/**
 * A machine whose every restart recovers the durable state its last step left, through the
 * records the driver would write (`changes`, snapshots encoded) and `replay`; with
 * `diskFaults`, some persists are cut by a crash (see `DiskFaults`).
 */
const durableMachine = (config: Config, diskFaults?: DiskFaults) => {
  type Disk = {
    persisted: Durable.Durable<Req, number, number>
    records: Array<Durable.Record<Req>>
  }
  const disks = new Map<string, Disk>()
  const codec = config.snapshot
  const write = (self: string, state: Machine.State<number, Req, number>) => {
    const disk = disks.get(self) ?? { persisted: Durable.empty, records: [] }
    const next = Durable.of(state)
    const records = [
      ...disk.records,
      ...Durable.changes(disk.persisted, next, (snapshot) => codec!.encode(snapshot)),
    ]
    // As the store rewrites its file once it has grown: one record of everything.
    if (codec !== undefined && records.length > 16) {
      const { base, ...rest } = next
      records.splice(0, records.length, {
        _tag: "Snapshot",
        ...rest,
        ...(base === undefined ? {} : { base: codec.encode(base) }),
      })
    }
    disks.set(self, { records, persisted: next })
    return records
  }
  /**
   * The crash of `self` while its step's records were being written after `synced`: the
   * disk keeps `synced` and a prefix of the new bytes; returns whether it did cut.
   */
  const cut = (
    self: string,
    synced: Array<Durable.Record<Req>>,
    next: Array<Durable.Record<Req>>,
  ) => {
    const faults = diskFaults!
    // The synced records are whole on disk (the store's own tests check that): the new bytes
    // start at a record boundary, and recovery's reading of them is what is checked here.
    const added = concat(next.slice(synced.length).map((record) => Wal.frame(recordBytes(record))))
    const kinds: ReadonlyArray<DiskFault> = ["lost-tail", "torn", "torn-zero-filled"]
    const kind = kinds[Math.floor(faults.random() * kinds.length)]!
    const kept = kind === "lost-tail" ? 0 : Math.floor(faults.random() * added.length)
    const tail = new Uint8Array(kind === "torn-zero-filled" ? added.length : kept)
    tail.set(added.subarray(0, kept))
    const decoded = Wal.decode(tail)
    if (decoded._tag === "Failure") {
      throw new Error(
        `${self} cannot restart after a ${kind} write (${kept} of ${added.length} new bytes): ${decoded.failure.reason} at ${decoded.failure.offset}`,
      )
    }
    const recovered = [
      ...synced,
      ...decoded.success.records.map((bytes) => decodeRecord(new TextDecoder().decode(bytes))),
    ]
    // The synced records, then a prefix of the new ones: never more than was written.
    expect(recovered.slice(synced.length)).toEqual(next.slice(synced.length, recovered.length))
    faults.counts.cut++
    if (kind === "lost-tail") faults.counts.lostTail++
    else if (kind === "torn") faults.counts.torn++
    else faults.counts.zeroFilled++
    if (recovered.length > synced.length) faults.counts.partial++
    disks.set(self, {
      records: recovered,
      persisted: Durable.replay<Req, number, number>(recovered, (data) => {
        const decodedBase = codec!.decode(data)
        if (decodedBase._tag === "Failure") throw new Error(`a snapshot does not decode: ${data}`)
        return decodedBase.success
      }),
    })
  }
  const disk = {
    get: (self: string): Durable.Durable<Req, number, number> | undefined => {
      const held = disks.get(self)
      if (held === undefined) return undefined
      return Durable.replay<Req, number, number>(held.records, (data) => {
        const decoded = codec!.decode(data)
        if (decoded._tag === "Failure") throw new Error(`a snapshot does not decode: ${data}`)
        return decoded.success
      })
    },
  }
  const inner = Machine.make(config)
  const counts = { restored: 0, restoredWithLog: 0, restoredWithSnapshot: 0 }
  const peers = new Map<string, ReadonlyArray<string>>()
  const machine: typeof inner = {
    init: (context) => {
      peers.set(context.self, context.peers)
      const restored = disk.get(context.self)
      const result = (restored === undefined ? inner : Machine.make({ ...config, restored })).init(
        context,
      )
      if (restored !== undefined) {
        counts.restored++
        if (restored.base !== undefined) counts.restoredWithSnapshot++
        if (restored.log.length > 0 || restored.base !== undefined) {
          counts.restoredWithLog++
          // Not amnesiac: it holds its log, its promise and its term again.
          expect(result.state.amnesiac).toBe(false)
          expect(Replication.lastSeq(result.state.replica)).toBe(
            (restored.base?.seq ?? 0) + restored.log.length,
          )
          expect(result.state.term).toBe(restored.term)
        }
      }
      write(context.self, result.state)
      return result
    },
    step: (state, input) => {
      const result = inner.step(state, input)
      const synced = disks.get(state.self)?.records ?? []
      const written = write(state.self, result.state)
      if (
        diskFaults !== undefined &&
        written.length > synced.length &&
        // Appended to (not a rewrite of the file, which replaces every record).
        written[0] === synced[0] &&
        written[synced.length - 1] === synced[synced.length - 1] &&
        diskFaults.random() < diskFaults.chance
      ) {
        // Crashed before the fsync: nothing of this step was sent; restarted from disk.
        cut(state.self, [...synced], written)
        return machine.init({ self: state.self, peers: peers.get(state.self)!, nowMs: input.nowMs })
      }
      return result
    },
  }
  return { machine, counts }
}

const withDirectory = <A, E>(use: (directory: string) => Effect.Effect<A, E>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "understudy-durable-"))),
    use,
    (directory) => Effect.sync(() => fs.rmSync(directory, { recursive: true, force: true })),
  )

describe("Durable", () => {
  it("changes, replayed, give the state they were computed for", () => {
    // A log as the machine changes it: appends, and a suffix replaced from some position.
    const operation = fc.oneof(
      fc.record({ append: fc.integer({ min: 1, max: 4 }) }),
      fc.record({ from: fc.nat({ max: 12 }), append: fc.integer({ min: 0, max: 3 }) }),
      fc.record({ term: fc.nat({ max: 5 }), commit: fc.nat({ max: 12 }) }),
    )
    fc.assert(
      fc.property(fc.array(operation, { maxLength: 30 }), (operations) => {
        let current: Durable.Durable<Req> = Durable.empty
        let persisted: Durable.Durable<Req> = Durable.empty
        const records: Array<Durable.Record<Req>> = []
        let epoch = 1
        for (const op of operations) {
          if ("term" in op) {
            current = { ...current, term: op.term, epoch: op.term * 4096, commitSeq: op.commit }
          } else {
            epoch++
            const kept = "from" in op ? current.log.slice(0, op.from) : current.log
            const log = [...kept]
            for (let i = 0; i < op.append; i++) log.push(entry(log.length + 1, epoch, i))
            current = { ...current, log }
          }
          records.push(...Durable.changes(persisted, current))
          persisted = current
        }
        const replayed = Durable.replay(records)
        expect(replayed.log).toEqual(current.log)
        expect(replayed.term).toBe(current.term)
        expect(replayed.epoch).toBe(current.epoch)
        expect(replayed.commitSeq).toBe(Math.min(current.commitSeq, current.log.length))
      }),
      { numRuns: 500 },
    )
  })

  it.effect(
    "the store recovers what was persisted, through compaction, and a torn tail at every byte offset gives the state before the last append",
    () =>
      withDirectory((directory) =>
        Effect.gen(function* () {
          const file = path.join(directory, "s1.wal")
          const states: Array<Durable.Durable<Req>> = [Durable.empty]
          yield* Effect.scoped(
            Effect.gen(function* () {
              // A small threshold: compaction happens several times.
              const store = yield* Durable.open(file, RequestSchema, 2_000)
              expect(store.recovered).toEqual(Durable.empty)
              let current: Durable.Durable<Req> = Durable.empty
              for (let seq = 1; seq <= 60; seq++) {
                current = {
                  term: 1 + Math.floor(seq / 20),
                  epoch: 4096 * (1 + Math.floor(seq / 20)),
                  commitSeq: seq - 1,
                  log: [...current.log, entry(seq, 4096, seq)],
                }
                yield* store.persist(current)
                states.push(current)
              }
            }),
          )
          const whole = fs.readFileSync(file)
          const recovered = yield* Effect.scoped(Durable.open(file, RequestSchema))
          expect(recovered.recovered).toEqual({ ...states[60]!, commitSeq: 59 })
          const decoded = Wal.decode(whole)
          if (decoded._tag !== "Success") throw new Error("the log should decode")
          // Compacted: 60 persists wrote 120 records (Hard and Entries each), fewer are left.
          expect(decoded.success.records.length).toBeLessThan(60)
          const last = decoded.success.records.at(-1)!
          const lastStart = whole.length - Wal.frame(last).length
          for (let offset = lastStart; offset < whole.length; offset++) {
            fs.writeFileSync(file, whole.subarray(0, offset))
            const torn = yield* Effect.scoped(Durable.open(file, RequestSchema))
            expect(torn.truncatedBytes).toBe(offset - lastStart)
            // Never more than was persisted, and every earlier persist is whole.
            const log = torn.recovered.log
            expect(log.length).toBeGreaterThanOrEqual(59)
            expect(log).toEqual(states[60]!.log.slice(0, log.length))
          }
        }),
      ),
  )

  it.effect(
    "with compaction in memory, the store recovers the snapshot its file rewrite encoded and every position after it; a snapshot that does not decode (or no codec) is ElectionWalCorrupt",
    () =>
      withDirectory((directory) =>
        Effect.gen(function* () {
          const file = path.join(directory, "s1.wal")
          const codec = Replication.snapshotCodec(Schema.Number, Schema.Number)
          const log: Array<Message.Entry<Req>> = []
          let current: Durable.Durable<Req, number, number> = Durable.empty
          yield* Effect.scoped(
            Effect.gen(function* () {
              const store = yield* Durable.open(file, RequestSchema, 1_500, codec)
              for (let seq = 1; seq <= 80; seq++) {
                log.push(entry(seq, 4096, seq))
                // Compacted every 10 positions, keeping the last 5 (as `Replication.compact`).
                const baseSeq = seq % 10 === 0 ? seq - 5 : (current.base?.seq ?? 0)
                const base =
                  baseSeq === (current.base?.seq ?? 0)
                    ? current.base
                    : { seq: baseSeq, epoch: 4096, state: baseSeq, clients: HashMap.empty() }
                current = {
                  term: 1,
                  epoch: 4096,
                  commitSeq: seq - 1,
                  ...(base === undefined ? {} : { base }),
                  log: log.slice(baseSeq),
                }
                yield* store.persist(current)
              }
            }),
          )
          const recovered = (yield* Effect.scoped(Durable.open(file, RequestSchema, 1_500, codec)))
            .recovered
          // Rewritten at least once: a snapshot is back, and every position after it.
          expect(recovered.base?.seq).toBeGreaterThan(0)
          expect(recovered.base?.state).toBe(recovered.base?.seq)
          expect(recovered.log).toEqual(log.slice(recovered.base!.seq))
          expect(recovered.commitSeq).toBe(79)
          // Without the codec, or with a damaged snapshot: typed, nothing decoded half-way.
          const noCodec = yield* Effect.flip(Effect.scoped(Durable.open(file, RequestSchema)))
          expect(noCodec._tag).toBe("ElectionWalCorrupt")
          const bad = path.join(directory, "bad.wal")
          fs.writeFileSync(
            bad,
            Wal.frame(
              new TextEncoder().encode(
                JSON.stringify({
                  _tag: "Snapshot",
                  term: 1,
                  epoch: 4096,
                  commitSeq: 0,
                  base: '{"seq":"x"}',
                  log: [],
                }),
              ),
            ),
          )
          const damaged = yield* Effect.flip(
            Effect.scoped(Durable.open(bad, RequestSchema, 1_500, codec)),
          )
          expect(damaged._tag).toBe("ElectionWalCorrupt")
        }),
      ),
  )

  it.effect("a record that passes its checksum but does not decode is ElectionWalCorrupt", () =>
    withDirectory((directory) =>
      Effect.gen(function* () {
        const file = path.join(directory, "s1.wal")
        fs.writeFileSync(file, Wal.frame(new TextEncoder().encode('{"_tag":"Hard","term":-1}')))
        const error = yield* Effect.flip(Effect.scoped(Durable.open(file, RequestSchema)))
        expect(error._tag).toBe("ElectionWalCorrupt")
      }),
    ),
  )

  it("a backup restored from disk follows its master again when it answers at the promised epoch, with no election", () => {
    const epoch = Machine.epochOf(1, 1)
    // n3 is the most capable (index 1): its mastership of term 1 is the restored promise.
    const machine = Machine.make({
      ...base,
      restored: { term: 1, epoch, commitSeq: 1, log: [entry(1, epoch, 5)] },
    })
    const started = machine.init({ self: "n1", peers: nodes, nowMs: 1_000 })
    expect(started.state.amnesiac).toBe(false)
    expect(started.state.replica.state).toBe(5)
    const replicate: Message.Message<Req> = {
      _tag: "Replicate",
      epoch,
      index: 1,
      prevSeq: 1,
      prevEpoch: epoch,
      entries: [],
      commitSeq: 1,
    }
    const after = machine.step(started.state, {
      _tag: "Receive",
      from: "n3",
      message: replicate,
      nowMs: 1_010,
    })
    expect(after.state.role).toBe("backup")
    expect(after.state.master).toBe("n3")
    expect(after.state.epoch).toBe(epoch)
  })

  const schedules = Number(process.env.STAGGERED_DURABLE_SCHEDULES ?? 1_000)
  it.each([
    {
      name: " and disk faults (persists cut by a crash: tail lost, torn, zero-filled)",
      config: base as Config,
      runs: schedules,
      diskFaults: true,
    },
    {
      name: ", with log compaction (every 3 applied entries)",
      config: {
        ...base,
        snapshot: Replication.snapshotCodec(Schema.Number, Schema.Number),
        compactEvery: 3,
        snapshotChunkChars: 16,
        maxLogEntries: 24,
      } as Config,
      runs: Math.ceil(schedules / 4),
    },
  ])(
    `FastSim with durable restarts$name: the invariants hold over $runs schedules and restarted servers are not amnesiac`,
    ({ config, runs, diskFaults }) => {
      let restoredWithLog = 0
      let restoredWithSnapshot = 0
      const failures: Array<string> = []
      const cuts = { cut: 0, lostTail: 0, torn: 0, zeroFilled: 0, partial: 0 }
      for (const seed of Seeds.seeds(runs)) {
        const { machine, counts } = durableMachine(
          config,
          diskFaults === true
            ? { random: generator(seed), chance: diskFaultChance, counts: cuts }
            : undefined,
        )
        try {
          runSchedule(machine, seed)
        } catch (error) {
          if (!(error instanceof FastSim.FastSimFailure)) {
            failures.push(`SEED=${seed}: ${error instanceof Error ? error.message : String(error)}`)
            continue
          }
          failures.push(`SEED=${error.seed}: ${error.invariant}: ${error.detail}`)
          if (Seeds.isReplay()) console.log(error.message)
        }
        restoredWithLog += counts.restoredWithLog
        restoredWithSnapshot += counts.restoredWithSnapshot
      }
      console.log(
        `durable FastSim: ${runs} schedules, ${restoredWithLog} restarts with a log, ${restoredWithSnapshot} of them with a snapshot; disk faults ${JSON.stringify(cuts)}`,
      )
      expect(failures).toEqual([])
      if (!Seeds.isReplay()) {
        expect(restoredWithLog).toBeGreaterThan(runs / 4)
        if (diskFaults === true) {
          // The premises: every kind of cut, some keeping whole new records.
          expect(cuts.lostTail).toBeGreaterThan(runs / 4)
          expect(cuts.torn).toBeGreaterThan(runs / 4)
          expect(cuts.zeroFilled).toBeGreaterThan(runs / 4)
          expect(cuts.partial).toBeGreaterThan(runs / 10)
        }
        if (config.snapshot !== undefined) expect(restoredWithSnapshot).toBeGreaterThan(runs / 10)
      }
    },
    600_000,
  )
})
