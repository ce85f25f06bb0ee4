/**
 * Durability: the records `changes` writes replay to the state they describe (appends,
 * overwritten suffixes, terms); the store on disk recovers what was persisted, through
 * compaction and a torn tail at every byte offset of its last record (a prefix of what was
 * persisted, never more); and the FastSim suite with every restart recovering its durable
 * state (as the driver persists it before sending) keeps the invariants, with restarted
 * servers counted again at once, through compaction (disk faults: `support/disk.ts`, run by
 * the main suite).
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
import { durableMachine, RequestSchema } from "./support/disk.ts"
import { base, type Config, nodes, type Req, runSchedule } from "./support/invariants.ts"

const entry = (seq: number, epoch: number, add: number): Message.Entry<Req> => ({
  _tag: "Request",
  seq,
  epoch,
  clientId: "c",
  requestId: seq,
  request: { add },
})

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

  it("a write torn between its records never leaves the commit point on an entry being replaced", () => {
    // An uncommitted suffix (2@A, 3@A) overwritten by a new master's entry (2@B) that
    // commits in the same step: found by the main FastSim suite (pauses with disk faults,
    // seed 5507), where the commit record landed and the entries did not.
    const a = Machine.epochOf(1, 0)
    const b = Machine.epochOf(2, 1)
    // Promised to B in this step, or in an earlier one.
    for (const promised of [true, false]) {
      const persisted: Durable.Durable<Req> = {
        term: promised ? 1 : 2,
        epoch: promised ? a : b,
        commitSeq: 1,
        log: [entry(1, a, 1), entry(2, a, 2), entry(3, a, 3)],
      }
      const next: Durable.Durable<Req> = {
        term: 2,
        epoch: b,
        commitSeq: 2,
        log: [persisted.log[0]!, entry(2, b, 9)],
      }
      const records = Durable.changes(persisted, next)
      const before = Durable.changes(Durable.empty, persisted)
      expect(Durable.replay([...before, ...records])).toEqual(next)
      for (let kept = 0; kept <= records.length; kept++) {
        const recovered = Durable.replay([...before, ...records.slice(0, kept)])
        // Every committed position holds what `next` holds there.
        for (let seq = 1; seq <= recovered.commitSeq; seq++) {
          expect(recovered.log[seq - 1]).toEqual(next.log[seq - 1])
        }
        // No entry of a newer epoch than the promise on disk.
        for (const held of recovered.log) expect(held.epoch).toBeLessThanOrEqual(recovered.epoch)
      }
    }
  })

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

  // Durable restarts with disk faults run in the main suite (`Election.fastsim.test.ts`,
  // every other of its 10,000 schedules); here, with compaction (snapshots on disk).
  const runs = Math.ceil(Number(process.env.STAGGERED_DURABLE_SCHEDULES ?? 1_000) / 4)
  it(`FastSim with durable restarts, with log compaction (every 3 applied entries): the invariants hold over ${runs} schedules and restarted servers are not amnesiac`, () => {
    const config: Config = {
      ...base,
      snapshot: Replication.snapshotCodec(Schema.Number, Schema.Number),
      compactEvery: 3,
      snapshotChunkChars: 16,
      logEntriesMax: 24,
    }
    let restoredWithLog = 0
    let restoredWithSnapshot = 0
    const failures: Array<string> = []
    for (const seed of Seeds.seeds(runs)) {
      const { machine, counts } = durableMachine(config)
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
      `durable FastSim: ${runs} schedules, ${restoredWithLog} restarts with a log, ${restoredWithSnapshot} of them with a snapshot`,
    )
    expect(failures).toEqual([])
    if (!Seeds.isReplay()) {
      expect(restoredWithLog).toBeGreaterThan(runs / 4)
      expect(restoredWithSnapshot).toBeGreaterThan(runs / 10)
    }
  }, 600_000)
})
