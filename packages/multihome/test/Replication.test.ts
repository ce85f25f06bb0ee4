import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import * as fc from "fast-check"
import * as Association from "../src/Association.ts"
import type * as Chunk from "../src/Chunk.ts"
import * as Replication from "../src/Replication.ts"
import { clientHost, established, Loopback } from "./associationHarness.ts"

const config = (localPort: number): Association.Config => ({
  ...Association.defaultConfig,
  localPort,
})

/** A live association to plan updates of. */
const liveState = (): Association.State => {
  const lb = new Loopback({ seed: 71 }, config(4000), config(5000))
  expect(lb.run(() => established(lb), 60_000)).toBe(true)
  return lb.client
}

const transmit = (chunks: ReadonlyArray<Chunk.Chunk>): Association.Output => ({
  _tag: "Send",
  to: { host: clientHost, udpPort: 9001 },
  message: { sourcePort: 4000, destinationPort: 5000, verificationTag: 1, chunks },
})

const sack = (cumulativeTsnAck: number): Association.Output =>
  transmit([
    {
      _tag: "Sack",
      cumulativeTsnAck,
      advertisedReceiverWindowCredit: 65536,
      gapAckBlocks: [],
      duplicateTsns: [],
    },
  ])

const update = (
  state: Association.State,
  outputs: ReadonlyArray<Association.Output>,
  created = false,
): Replication.Update => ({ associationId: 1, created, inputs: [], outputs, state })

const inexact: ReadonlyArray<Replication.Policy> = [
  { _tag: "Interval", every: "100 millis" },
  { _tag: "OnEvent", events: ["CommUp"] },
]

describe("Replication.Shipper: the inexact policies make the Cumulative TSN Ack known first", () => {
  for (const policy of inexact) {
    const name = Replication.formatPolicy(policy)

    it(`${name}: creation waits for the secondary's copy`, () => {
      const shipper = new Replication.Shipper(policy)
      const plan = shipper.onUpdate(update(liveState(), [], true))
      expect(plan.waitForAck).toBe(true)
      expect(plan.messages.map((m) => m._tag)).toEqual(["Snapshot"])
    })

    it(`${name}: a SACK acknowledging more waits for a CumulativeAck; one acknowledging nothing new does not`, () => {
      const state = liveState()
      const shipper = new Replication.Shipper(policy)
      shipper.onUpdate(update(state, [], true))
      const first = shipper.onUpdate(update(state, [sack(100)]))
      expect(first.waitForAck).toBe(true)
      expect(first.messages).toEqual([
        { _tag: "CumulativeAck", seq: shipper.lastSeq, epoch: 0, association: 1, tsn: 100 },
      ])
      expect(shipper.onUpdate(update(state, [sack(100)]))).toEqual({
        messages: [],
        waitForAck: false,
      })
      // Serial arithmetic: past 2^32 − 1 the TSN wraps and still counts as more.
      const wrapped = new Replication.Shipper(policy)
      wrapped.onUpdate(update(state, [sack(0xfffffff0)], true))
      const plan = wrapped.onUpdate(update(state, [sack(5)]))
      expect(plan.waitForAck).toBe(true)
      expect(plan.messages).toContainEqual(expect.objectContaining({ tsn: 5 }))
    })

    it(`${name}: a SHUTDOWN's Cumulative TSN Ack counts like a SACK's`, () => {
      const state = liveState()
      const shipper = new Replication.Shipper(policy)
      shipper.onUpdate(update(state, [], true))
      const plan = shipper.onUpdate(
        update(state, [transmit([{ _tag: "Shutdown", cumulativeTsnAck: 42 }])]),
      )
      expect(plan.waitForAck).toBe(true)
      expect(plan.messages).toContainEqual(
        expect.objectContaining({ _tag: "CumulativeAck", tsn: 42 }),
      )
    })
  }

  it("an update with no acknowledgement and no new association goes out at once", () => {
    const state = liveState()
    const shipper = new Replication.Shipper({ _tag: "Interval", every: "100 millis" })
    shipper.onUpdate(update(state, [], true))
    expect(shipper.onUpdate(update(state, [transmit([{ _tag: "CookieAck" }])]))).toEqual({
      messages: [],
      waitForAck: false,
    })
  })

  it("the exact policies send no CumulativeAck (their copy has it already)", () => {
    const state = liveState()
    for (const policy of [
      { _tag: "EveryUpdate" },
      { _tag: "StateNode" },
      { _tag: "OnImpendingFailure" },
    ] as const) {
      const shipper = new Replication.Shipper(policy)
      shipper.onUpdate(update(state, [], true))
      const plan = shipper.onUpdate(update(state, [sack(100)]))
      expect(plan.messages.some((m) => m._tag === "CumulativeAck")).toBe(false)
    }
  })
})

describe("Replication.Replicas: the takeover of a copy", () => {
  it("an inexact copy is resynchronised past the highest Cumulative TSN Ack received", () => {
    const replicas = new Replication.Replicas(config(4000))
    const policy: Replication.Policy = { _tag: "Interval", every: "100 millis" }
    expect(replicas.takeOverOptions(policy, 1)).toEqual({
      resync: true,
      reserve: Replication.reserve,
    })
    expect(
      replicas.apply({ _tag: "CumulativeAck", seq: 1, epoch: 0, association: 1, tsn: 77 }),
    ).toBe(undefined)
    expect(replicas.applied).toBe(1)
    expect(replicas.takeOverOptions(policy, 1)).toEqual({
      resync: true,
      reserve: Replication.reserve,
      cumulativeTsnAck: 77,
    })
    replicas.apply({ _tag: "Gone", seq: 2, epoch: 0, association: 1 })
    expect(replicas.takeOverOptions(policy, 1)).toEqual({
      resync: true,
      reserve: Replication.reserve,
    })
  })

  it("an exact copy is taken over as it is", () => {
    const replicas = new Replication.Replicas(config(4000))
    replicas.apply({ _tag: "CumulativeAck", seq: 1, epoch: 0, association: 1, tsn: 77 })
    expect(replicas.takeOverOptions({ _tag: "EveryUpdate" }, 1)).toEqual({})
    expect(replicas.takeOverOptions({ _tag: "StateNode" }, 1)).toEqual({})
  })
})

describe("Replication.chooseStored (state-node takeover)", () => {
  const snapshot = Association.snapshot(liveState())
  const stored = (association: number, epoch: number, seq = 1): Replication.Stored => ({
    key: `/p/association/${association}/${epoch}`,
    message: { _tag: "Snapshot", seq, epoch, association, snapshot },
  })
  const keys = (list: ReadonlyArray<Replication.Stored>) => list.map((entry) => entry.key).sort()

  it("per association, the newest epoch's snapshot is adopted and an older one refused", () => {
    const chosen = Replication.chooseStored([stored(1, 1), stored(1, 2), stored(2, 2)], 0)
    expect(keys(chosen.adopt)).toEqual(["/p/association/1/2", "/p/association/2/2"])
    expect(keys(chosen.stale)).toEqual(["/p/association/1/1"])
  })

  it("whatever order the store lists them in", () => {
    const chosen = Replication.chooseStored([stored(1, 2), stored(1, 1)], 0)
    expect(keys(chosen.adopt)).toEqual(["/p/association/1/2"])
    expect(keys(chosen.stale)).toEqual(["/p/association/1/1"])
  })

  it("a snapshot below the floor (the last completed takeover's epoch) is refused, even alone", () => {
    const chosen = Replication.chooseStored([stored(1, 1), stored(2, 3)], 2)
    expect(keys(chosen.adopt)).toEqual(["/p/association/2/3"])
    expect(keys(chosen.stale)).toEqual(["/p/association/1/1"])
  })

  it("a snapshot at the floor is adopted (the primary that completed its takeover wrote it)", () => {
    const chosen = Replication.chooseStored([stored(1, 2)], 2)
    expect(keys(chosen.adopt)).toEqual(["/p/association/1/2"])
    expect(chosen.stale).toEqual([])
  })
})

describe("Replication.codec: Deposed carries the serving node's id (the tie-break between two serving nodes)", () => {
  const roundTrip = (message: Replication.Message) => {
    const encoded = Replication.codec.encode(message)
    if (!Result.isSuccess(encoded)) throw new Error("a Deposed must encode")
    return Replication.codec.decode(encoded.success)
  }

  it("with or without an epoch and a node id (an older sender names none), it round-trips", () => {
    for (const message of [
      { _tag: "Deposed" as const },
      { _tag: "Deposed" as const, epoch: 3 },
      { _tag: "Deposed" as const, epoch: 3, node: "udp://127.0.0.2:9899" },
    ]) {
      const decoded = roundTrip(message)
      expect(Result.isSuccess(decoded) && decoded.success).toEqual(message)
    }
  })

  it("fuzz: a node id that is not a string (any JSON value) is a CodecError, never a Deposed", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (node) => {
        const message = { _tag: "Deposed", epoch: 1, node } as unknown as Replication.Message
        const decoded = roundTrip(message)
        if (typeof node === "string") expect(Result.isSuccess(decoded)).toBe(true)
        else expect(Result.isFailure(decoded)).toBe(true)
        return true
      }),
      { numRuns: 300, seed: 0x5c7 },
    )
  })
})
