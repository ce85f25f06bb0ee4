/**
 * Durable restarts on FastSim: every restart recovers the durable state its last step left
 * (through the records the driver writes and `Durable.replay`), and disk faults cut some
 * persists by a crash. Shared by the durable suite and the main 10,000-schedule one.
 */
import { expect } from "@effect/vitest"
import { Schema } from "effect"
import * as Durable from "../../src/Durable.ts"
import type * as Machine from "../../src/Machine.ts"
import * as MachineModule from "../../src/Machine.ts"
import * as Replication from "../../src/Replication.ts"
import * as Wal from "../../src/Wal.ts"
import type { Config, Req } from "./invariants.ts"

export const RequestSchema = Schema.Struct({ add: Schema.Int })

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
export interface DiskFaults {
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
export const diskFaultChance = 0.004

const RecordCodec = Durable.recordSchema(RequestSchema)
const encodeRecord = Schema.encodeSync(RecordCodec)
const decodeRecord = Schema.decodeUnknownSync(RecordCodec)
const recordBytes = (record: Durable.Record<Req>) =>
  new TextEncoder().encode(encodeRecord(record) as string)

/**
 * A machine whose every restart recovers the durable state its last step left, through the
 * records the driver would write (`changes`, snapshots encoded) and `replay`; with
 * `diskFaults`, some persists are cut by a crash (see `DiskFaults`).
 */
export const durableMachine = (config: Config, diskFaults?: DiskFaults) => {
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
    const added = Buffer.concat(
      next.slice(synced.length).map((record) => Wal.frame(recordBytes(record))),
    )
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
  const inner = MachineModule.make(config)
  const counts = { restored: 0, restoredWithLog: 0, restoredWithSnapshot: 0 }
  const peers = new Map<string, ReadonlyArray<string>>()
  const machine: typeof inner = {
    init: (context) => {
      peers.set(context.self, context.peers)
      const restored = disk.get(context.self)
      const result = (
        restored === undefined ? inner : MachineModule.make({ ...config, restored })
      ).init(context)
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
