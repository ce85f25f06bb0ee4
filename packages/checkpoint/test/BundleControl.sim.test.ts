/**
 * Simulation of a bundle's control protocol through server crashes, driving the package's
 * own pure pieces: `BundleControl.apply` (the server), `BundleControl.rejoin` (the client
 * after a takeover) and the bundle's checkpoint (encoded, decoded, `fromCheckpoint`). Each
 * seed draws a run of commands (LIST, GET of objects that exist or not, PAUSE / RESUME of
 * transfers that exist or not) and crashes at any step of a command: before the server
 * applies it, after it applied it but before the checkpoint, after the checkpoint but
 * before the reply, or with the reply lost on the way. A crash loses the server's memory;
 * the next server starts from the last checkpoint.
 *
 * Checked after every seed: every command the client saw answered took effect exactly once
 * (a GET answered is one transfer, a PAUSE answered stays paused until a RESUME answered),
 * the replies the client got are the ones the commands deserve, and the final checkpoint
 * holds exactly the client's view. Plus the decoders fuzzed: typed errors, never a throw.
 *
 * Replay one seed: UNDERSTUDY_SEED=<n> npx vitest run test/BundleControl.sim.test.ts
 */
import { Prng, Seeds } from "@understudy/testkit"
import { Result } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as BundleControl from "../src/BundleControl.ts"
import * as Checkpoint from "../src/Checkpoint.ts"
import * as Message from "../src/Message.ts"

const objects: Record<string, number> = { a: 1_000, b: 20, c: 0 }
const endpoint = { host: "127.0.0.1", port: 1 }

/** The checkpoint a server writes for `state` (what the session layer's contributor appends). */
const checkpointOf = (state: BundleControl.State, controlIsn: number): Uint8Array => {
  const checkpoint: Checkpoint.Checkpoint = {
    version: 1,
    backend: "session",
    bundleId: "sim",
    serverId: "s",
    takenAtMs: 0,
    generation: 1,
    protocol: BundleControl.protocol,
    resumeCounter: 0,
    connections: [
      {
        name: "control",
        role: "control",
        transport: "tcp",
        source: endpoint,
        destination: endpoint,
        initialSeqSource: 5,
        initialSeqDestination: controlIsn,
        currentSeqSource: 5,
        currentSeqDestination: state.nextCommand,
        ackedSeqSource: 5,
        sendHorizonSeq: 5,
        coverage: "source",
        layers: {},
      },
      ...state.transfers.map(
        (t): Checkpoint.ConnectionState => ({
          name: t.channel,
          role: "data",
          transport: t.transport,
          ...(t.group === undefined ? {} : { group: t.group }),
          source: endpoint,
          destination: endpoint,
          initialSeqSource: t.initialSeq,
          initialSeqDestination: 0,
          currentSeqSource: t.initialSeq,
          currentSeqDestination: 0,
          ackedSeqSource: t.initialSeq,
          sendHorizonSeq: t.initialSeq + t.size,
          coverage: "source",
          object: { id: t.name, firstByteSeq: t.initialSeq, size: t.size },
          layers: {},
        }),
      ),
    ],
    layers: { [BundleControl.layer]: BundleControl.encodeBlock(state) },
  }
  const encoded = Checkpoint.encode(checkpoint)
  if (Result.isFailure(encoded)) throw encoded.failure
  return encoded.success
}

const restore = (bytes: Uint8Array): BundleControl.State => {
  const decoded = Checkpoint.decode(bytes)
  if (Result.isFailure(decoded)) throw decoded.failure
  const state = BundleControl.fromCheckpoint(decoded.success)
  if (Result.isFailure(state)) throw state.failure
  return state.success
}

type Crash = "none" | "before-apply" | "before-checkpoint" | "before-reply" | "reply-lost"
const crashes: ReadonlyArray<Crash> = [
  "before-apply",
  "before-checkpoint",
  "before-reply",
  "reply-lost",
]

/** A failed check names its seed (cheaper than `expect` in the hot loop). */
const check = (ok: boolean, seed: number, what: string) => {
  if (!ok) throw new Error(`seed ${seed}: ${what}`)
}

const simulate = (seed: number) => {
  const random = Prng.make(seed)
  const controlIsn = random.int(0, 2 ** 40)
  // The last checkpoint written; encoded and decoded whenever a server starts from it.
  let durable = BundleControl.initial(controlIsn)
  const takeOver = () => restore(checkpointOf(durable, controlIsn))
  let server = takeOver()
  let isn = 1_000
  // The client's view: built only from replies it received.
  let next = controlIsn
  const view = new Map<string, { name: string; paused: boolean }>()
  let crashCount = 0
  const commands = random.int(1, 20)
  for (let c = 0; c < commands; c++) {
    const channels = [...view.keys(), "data-99"]
    const pick = random.int(0, 3)
    const command: Message.Command =
      pick === 0
        ? { _tag: "Command", seq: next, op: "LIST" }
        : pick === 1
          ? {
              _tag: "Command",
              seq: next,
              op: "GET",
              name: ["a", "b", "c", "zz"][random.int(0, 3)]!,
            }
          : {
              _tag: "Command",
              seq: next,
              op: pick === 2 ? "PAUSE" : "RESUME",
              transfer: channels[random.int(0, channels.length - 1)]!,
            }
    let reply: Message.Reply | undefined
    for (let attempt = 0; reply === undefined; attempt++) {
      check(attempt < 10, seed, "a command never answered")
      const crash: Crash = random.next() < 0.3 ? crashes[random.int(0, 3)]! : "none"
      // The server: apply, checkpoint, reply (the crash cuts it short).
      let sent: Message.Reply | undefined
      if (crash !== "before-apply") {
        const lookup: BundleControl.Lookup =
          command.op === "LIST"
            ? { objects: Object.entries(objects).map(([name, size]) => ({ name, size })) }
            : command.op === "GET"
              ? { size: objects[command.name!], initialSeq: isn++ }
              : {}
        const applied = BundleControl.apply(server, command, lookup)
        check(applied._tag !== "OutOfOrder", seed, "a command out of order")
        if (applied._tag === "Applied") {
          server = applied.state
          if (crash !== "before-checkpoint") durable = server
        }
        if ((crash === "none" || crash === "reply-lost") && applied._tag !== "OutOfOrder")
          sent = applied.reply
      }
      if (crash === "none") {
        reply = sent
        break
      }
      // A takeover: the next server knows only the checkpoint.
      crashCount++
      server = takeOver()
      const step = BundleControl.rejoin(next, true, server.nextCommand)
      check(step !== "mismatch", seed, "the checkpoint is not where the client is")
      if (step === "reply-follows") reply = server.lastReply
      // "resend": the loop sends it again.
    }
    check(reply!.seq === command.seq, seed, "a reply to another command")
    next++
    // The reply the command deserves, given what the client knows.
    if (command.op === "GET") {
      const exists = objects[command.name!] !== undefined
      check(reply!.ok === exists, seed, `GET ${command.name} answered ${reply!.ok}`)
      if (exists) {
        check(reply!.transfer!.name === command.name, seed, "GET of another object")
        check(!view.has(reply!.transfer!.channel), seed, "one GET, two transfers")
        view.set(reply!.transfer!.channel, { name: command.name!, paused: false })
      }
    } else if (command.op === "PAUSE" || command.op === "RESUME") {
      const known = view.get(command.transfer!)
      check(reply!.ok === (known !== undefined), seed, `${command.op} ${command.transfer}`)
      if (known !== undefined) known.paused = command.op === "PAUSE"
    } else check(reply!.objects!.length === 3, seed, "LIST")
    // Between commands the client may find itself taken over too: nothing pending.
    if (random.next() < 0.1) {
      server = takeOver()
      check(BundleControl.rejoin(next, false, server.nextCommand) === "in-step", seed, "rejoin")
    }
  }
  const final = takeOver()
  expect(final.nextCommand).toBe(next)
  expect(
    final.transfers.map((t) => [t.channel, t.name, t.paused]),
    `seed ${seed}`,
  ).toEqual([...view].map(([channel, t]) => [channel, t.name, t.paused]))
  return crashCount
}

describe("bundle control protocol through crashes", () => {
  it("every answered command takes effect exactly once; paused stays paused", () => {
    let crashed = 0
    for (const seed of Seeds.seeds(1_000)) crashed += simulate(seed)
    if (Seeds.seeds(1_000).length === 1_000) expect(crashed).toBeGreaterThan(1_000)
  })

  it("a pending command with a server that is neither before nor at it: mismatch", () => {
    expect(BundleControl.rejoin(10, true, 9)).toBe("mismatch")
    expect(BundleControl.rejoin(10, true, 12)).toBe("mismatch")
    expect(BundleControl.rejoin(10, false, 11)).toBe("mismatch")
  })

  it("a full bundle refuses another GET; a command out of order is reported", () => {
    let state = BundleControl.initial(0)
    for (let i = 0; i < BundleControl.transfersMax; i++) {
      const applied = BundleControl.apply(
        state,
        { _tag: "Command", seq: i, op: "GET", name: "a" },
        { size: 1, initialSeq: i },
      )
      if (applied._tag !== "Applied") throw new Error(applied._tag)
      state = applied.state
    }
    const full = BundleControl.apply(
      state,
      { _tag: "Command", seq: BundleControl.transfersMax, op: "GET", name: "a" },
      { size: 1, initialSeq: 99 },
    )
    expect(full._tag === "Applied" && full.reply.ok).toBe(false)
    expect(BundleControl.apply(state, { _tag: "Command", seq: 99, op: "LIST" }, {})._tag).toBe(
      "OutOfOrder",
    )
  })

  it("a GET over UDP or multicast: the transfer records its transport and group; a server without UDP refuses it", () => {
    const state = BundleControl.initial(0)
    const group = { host: "239.255.1.2", port: 40_000 }
    const multicast = BundleControl.apply(
      state,
      { _tag: "Command", seq: 0, op: "GET", name: "a", transport: "udp-multicast" },
      { size: 1, initialSeq: 7, group },
    )
    if (multicast._tag !== "Applied") throw new Error(multicast._tag)
    expect(multicast.state.transfers[0]).toMatchObject({ transport: "udp-multicast", group })
    expect(multicast.reply.transfer).toMatchObject({
      transport: "udp-multicast",
      group: "239.255.1.2:40000",
    })
    const noGroup = BundleControl.apply(
      state,
      { _tag: "Command", seq: 0, op: "GET", name: "a", transport: "udp-multicast" },
      { size: 1, initialSeq: 7 },
    )
    expect(noGroup._tag === "Applied" && noGroup.reply.ok).toBe(false)
    const noUdp = BundleControl.apply(
      state,
      { _tag: "Command", seq: 0, op: "GET", name: "a", transport: "udp" },
      { size: 1, initialSeq: 7, unsupported: "no UDP here" },
    )
    expect(noUdp._tag === "Applied" && noUdp.reply).toMatchObject({
      ok: false,
      detail: "no UDP here",
    })
    // Taken over: the checkpoint gives the transfer back with its transport and group.
    const restored = Checkpoint.decode(checkpointOf(multicast.state, 0))
    if (restored._tag === "Failure") throw restored.failure
    const back = BundleControl.fromCheckpoint(restored.success)
    if (back._tag === "Failure") throw back.failure
    expect(back.success.transfers[0]).toMatchObject({ transport: "udp-multicast", group })
  })

  it("fuzzed control messages and bundle blocks: typed errors, never a throw", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        const frame = new Uint8Array(bytes.length + 1)
        frame[0] = 3
        frame.set(bytes, 1)
        try {
          Message.codec.decode(frame)
        } catch (error) {
          expect(error).toBeInstanceOf(Error)
        }
      }),
      { numRuns: 300 },
    )
    const valid = BundleControl.encodeBlock({
      nextCommand: 1,
      transfers: [
        { channel: "data-1", name: "a", size: 1, initialSeq: 1, paused: true, transport: "tcp" },
      ],
      lastReply: { _tag: "Reply", seq: 0, ok: true },
    })
    const bundle = Checkpoint.decode(
      checkpointOf(
        {
          nextCommand: 1,
          transfers: [
            {
              channel: "data-1",
              name: "a",
              size: 1,
              initialSeq: 1,
              paused: true,
              transport: "tcp",
            },
          ],
          lastReply: undefined,
        },
        0,
      ),
    )
    if (Result.isFailure(bundle)) throw bundle.failure
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc
            .tuple(fc.integer({ min: 0, max: valid.length - 1 }), fc.integer({ min: 0, max: 255 }))
            .map(([at, byte]) => {
              const copy = valid.slice()
              copy[at] = byte
              return copy
            }),
        ),
        (block) => {
          const state = BundleControl.fromCheckpoint({
            ...bundle.success,
            layers: { [BundleControl.layer]: block },
          })
          if (Result.isFailure(state)) expect(state.failure._tag).toBe("CheckpointDecodeError")
        },
      ),
      { numRuns: 500 },
    )
  })
})
