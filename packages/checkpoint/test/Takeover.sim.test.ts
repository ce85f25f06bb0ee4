/**
 * Simulation of transfers through server crashes, driving the package's own pure pieces:
 * `Sequence` (sender window and horizon, receiver), `Checkpoint` (encode, decode, compare),
 * `Proof` and `Resume.evaluate`. Each seed draws an object, a policy, a coverage (object
 * source or checkpointed window), network delays (acknowledgements lag), checkpoint writes
 * that fail (lost) and one to three kill points: a crash between any two steps, with the
 * data in flight lost. At a takeover the new server reads the latest durable checkpoint —
 * or, for some seeds, a stale older one — and the client presents its acknowledgement.
 *
 * Checked after every seed: the bytes the application read are exactly the object (none
 * lost, none repeated); every honest resume within the checkpoint is accepted; a resume
 * from a stale checkpoint is either exact or a typed refusal; forged, replayed and
 * out-of-range requests are refused with their reason, and the transfer then goes on.
 *
 * Replay one seed: UNDERSTUDY_SEED=<n> npx vitest run test/Takeover.sim.test.ts
 */
import { Prng, Seeds } from "@understudy/testkit"
import { Result } from "effect"
import { describe, expect, it } from "vitest"
import * as Checkpoint from "../src/Checkpoint.ts"
import * as Proof from "../src/Proof.ts"
import * as Resume from "../src/Resume.ts"
import * as Sequence from "../src/Sequence.ts"

const objectByte = (seed: number, index: number) => (index * 31 + seed * 7 + (index >>> 8)) & 0xff

interface InFlight {
  readonly at: number
  readonly seq: number
  readonly bytes: Uint8Array
}

interface Outcome {
  readonly kills: number
  readonly refusals: Record<string, number>
  readonly staleAccepted: number
}

const simulate = (seed: number): Outcome => {
  const random = Prng.make(seed)
  const size = random.int(1, 300_000)
  const object = new Uint8Array(size).map((_, i) => objectByte(seed, i))
  const coverage: Checkpoint.Coverage = random.next() < 0.5 ? "source" : "window"
  const everyBytes = random.int(1_024, coverage === "window" ? 64 * 1024 : 128 * 1024)
  const windowBytesMax = random.int(2_048, 256 * 1024)
  const segmentMax = random.int(100, 16_384)
  const writeLossRate = random.next() * 0.3
  const staleReads = random.next() < 0.2
  const maxDelay = random.int(0, 8)
  const killsPlanned = random.int(1, 3)
  // Kill points: the server crashes at the first step after the client has read this many bytes.
  const killOffsets = Array.from({ length: killsPlanned }, () => random.int(0, size - 1)).sort(
    (a, b) => a - b,
  )
  const secret = Proof.newSecret()
  const sessionId = `sim-${seed}`
  const isn = Proof.newInitialSeq()
  const firstByteSeq = isn

  // Everything durable: the store's history of checkpoints of this bundle.
  const durable: Array<Checkpoint.Checkpoint> = []
  const delivered: Array<Uint8Array> = []
  let receiver = Sequence.receiver(isn)
  let sender = Sequence.sender(isn, windowBytesMax, isn)
  /** Window coverage: bytes given to the session layer, from `sender.acked`. */
  let given = isn
  let toClient: Array<InFlight> = []
  let toServer: Array<{ readonly at: number; readonly ack: number }> = []
  let counter = 0
  let generation = 0
  let kills = 0
  let staleAccepted = 0
  const refusals: Record<string, number> = {}
  const refused = (reason: string) => {
    refusals[reason] = (refusals[reason] ?? 0) + 1
  }

  const connection = (): Checkpoint.ConnectionState => ({
    name: "data",
    role: "data",
    transport: "tcp",
    source: { host: "127.0.0.1", port: 9 },
    destination: { host: "127.0.0.1", port: 10 },
    initialSeqSource: isn,
    initialSeqDestination: 0,
    currentSeqSource: coverage === "window" ? given : sender.next,
    currentSeqDestination: 0,
    ackedSeqSource: sender.acked,
    sendHorizonSeq:
      coverage === "window" ? given : Math.min(sender.next + everyBytes, firstByteSeq + size),
    coverage,
    ...(coverage === "window"
      ? { window: object.slice(sender.acked - firstByteSeq, given - firstByteSeq) }
      : { object: { id: "obj", firstByteSeq, size } }),
    layers: {},
  })

  /** Gathers, encodes, writes (maybe lost), and on success moves the horizon. */
  const takeCheckpoint = () => {
    if (coverage === "window")
      given = Math.min(firstByteSeq + size, sender.acked + Math.min(everyBytes, windowBytesMax))
    const checkpoint: Checkpoint.Checkpoint = {
      version: 1,
      backend: "session",
      bundleId: sessionId,
      serverId: `s${kills}`,
      takenAtMs: 0,
      generation: ++generation,
      protocol: "sim/1",
      resumeCounter: counter,
      connections: [connection()],
      layers: {},
    }
    const bytes = Result.getOrThrow(Checkpoint.encode(checkpoint))
    if (random.next() < writeLossRate) return
    const stored = Result.getOrThrow(Checkpoint.decode(bytes))
    durable.push(stored)
    sender = Sequence.extendHorizon(sender, stored.connections[0]!.sendHorizonSeq)
  }

  takeCheckpoint()
  while (durable.length === 0) takeCheckpoint()

  const takeover = (now: number) => {
    kills++
    toClient = [] // the connection is gone with its in-flight data
    toServer = []
    const latest = durable.length - 1
    const pick = staleReads && latest > 0 ? random.int(Math.max(0, latest - 2), latest) : latest
    const checkpoint = durable[pick]!
    const ack = receiver.next
    // Bad input first: each is refused with its reason and changes nothing.
    const attempt = (r: Resume.Request) => Resume.evaluate(checkpoint, secret, r)
    const sign = (c: number, acks: Record<string, number>) => ({
      sessionId,
      counter: c,
      acks,
      proof: Proof.sign(secret, sessionId, c, acks),
    })
    if (random.next() < 0.3) {
      const forged = attempt({ ...sign(counter + 1, { data: ack }), proof: Proof.newSecret() })
      expect(Result.isFailure(forged) && forged.failure.reason).toBe("WrongSession")
      const old = attempt(sign(checkpoint.resumeCounter, { data: ack }))
      if (checkpoint.resumeCounter > 0)
        expect(Result.isFailure(old) && old.failure.reason).toBe("ReplayedProof")
      const beyond = attempt(
        sign(counter + 1, { data: checkpoint.connections[0]!.sendHorizonSeq + 1 }),
      )
      expect(Result.isFailure(beyond) && beyond.failure.reason).toBe("BeyondSent")
      refused("bad-input-refused")
    }
    counter++
    const outcome = attempt(sign(counter, { data: ack }))
    if (Result.isFailure(outcome)) {
      // Only a stale checkpoint may fail to cover an honest acknowledgement.
      expect(
        pick,
        `SEED=${seed}: refused ${outcome.failure.reason} on the latest checkpoint`,
      ).toBeLessThan(latest)
      expect(["TooOld", "BeyondSent"]).toContain(outcome.failure.reason)
      refused(outcome.failure.reason)
      // The client surfaces the refusal; a later attempt on the latest checkpoint resumes.
      counter++
      const retry = Resume.evaluate(durable[latest]!, secret, sign(counter, { data: ack }))
      expect(Result.isSuccess(retry), `SEED=${seed}: the latest checkpoint refused`).toBe(true)
      adopt(Result.getOrThrow(retry), now)
      return
    }
    if (pick < latest) staleAccepted++
    adopt(outcome.success, now)
  }

  const adopt = (plan: Resume.Plan, _now: number) => {
    const restored = plan.checkpoint.connections[0]!
    // Recreated unready from the checkpoint: the window or the object source covers ack..
    sender = {
      initialSeq: restored.initialSeqSource,
      acked: restored.ackedSeqSource,
      next: restored.ackedSeqSource,
      horizon: restored.sendHorizonSeq,
      windowBytesMax,
    }
    given = coverage === "window" ? restored.currentSeqSource : given
    durable.push({ ...plan.checkpoint, generation: ++generation })
  }

  const sendOne = (now: number) => {
    const end = coverage === "window" ? given : firstByteSeq + size
    const n = Sequence.sendable(sender, Math.min(segmentMax, end - sender.next))
    if (n <= 0) return false
    const from = sender.next - firstByteSeq
    toClient.push({
      at: now + random.int(0, maxDelay),
      seq: sender.next,
      bytes: object.subarray(from, from + n),
    })
    sender = Sequence.sent(sender, n)
    return true
  }

  let step = 0
  const stepsMax = 2_000_000
  while (receiver.next < firstByteSeq + size) {
    step++
    if (step > stepsMax) throw new Error(`SEED=${seed}: no progress after ${stepsMax} steps`)
    if (killOffsets.length > 0 && receiver.next - firstByteSeq >= killOffsets[0]!) {
      killOffsets.shift()
      takeover(step)
      continue
    }
    // Server: send what the window and horizon allow; checkpoint when near the horizon.
    sendOne(step)
    const nearHorizon =
      coverage === "window"
        ? sender.next >= given && given < firstByteSeq + size
        : sender.horizon - sender.next < everyBytes / 2 && sender.horizon < firstByteSeq + size
    if (nearHorizon || random.next() < 0.02) takeCheckpoint()
    // Network: deliver what is due, in order (TCP).
    while (toClient.length > 0 && toClient[0]!.at <= step) {
      const segment = toClient.shift()!
      const outcome = Sequence.receive(receiver, segment.seq, segment.bytes.length)
      if (outcome._tag === "Gap") throw new Error(`SEED=${seed}: gap on an ordered connection`)
      if (outcome._tag === "Deliver") {
        delivered.push(segment.bytes.subarray(outcome.offset, outcome.offset + outcome.length))
        receiver = outcome.state
      }
    }
    // Client: acknowledges now and then (lagging).
    if (random.next() < 0.5)
      toServer.push({ at: step + random.int(0, maxDelay), ack: receiver.next })
    while (toServer.length > 0 && toServer[0]!.at <= step) {
      const acked = Sequence.acknowledge(sender, toServer.shift()!.ack)
      if (acked._tag === "BeyondSent") throw new Error(`SEED=${seed}: acknowledged beyond sent`)
      if (acked._tag === "Advanced") sender = acked.state
    }
  }

  const received = Buffer.concat(delivered)
  expect(received.length, `SEED=${seed}: bytes read`).toBe(size)
  expect(Buffer.compare(received, Buffer.from(object)), `SEED=${seed}: content`).toBe(0)
  return { kills, refusals, staleAccepted }
}

describe("takeover simulation", () => {
  it("no byte lost or repeated across 1,000 seeds of kill points; refusals only where the checkpoint can not cover", {
    // Pure computation, ~10 s alone; a bound for a shared, loaded 2-core machine.
    timeout: 180_000,
  }, () => {
    let kills = 0
    const refusals: Record<string, number> = {}
    for (const seed of Seeds.seeds(1_000)) {
      const outcome = simulate(seed)
      kills += outcome.kills
      for (const [reason, count] of Object.entries(outcome.refusals))
        refusals[reason] = (refusals[reason] ?? 0) + count
    }
    if (Seeds.seeds(1_000).length === 1_000) expect(kills).toBeGreaterThanOrEqual(1_000)
    console.log(`takeover simulation: ${kills} kills`, refusals)
  })
})
