/**
 * Two endpoints as pure machines (`src/Machine.ts`, the endpoint machine) in the shared
 * simulator, FastSim, over seeded schedules of loss, duplication, reordering and partitions
 * (one way and both), and of the server's two addresses down or lossy, healed at the end:
 * the client opens an association, both sides send numbered messages on four streams while
 * it is established, and every packet goes through the wire codec. Invariants: every message is delivered once and in order on its stream, only what
 * was sent is delivered, and after the heal the association is established again with
 * everything delivered. Then a multihomed server (two addresses) whose primary address goes
 * down for a seeded while (FastSim's `addressFaults`): the client's association moves to
 * the other path. Then nodes crash and restart (a machine lost, `init` run again) while
 * the peer keeps its association: it must see it aborted or restarted, and the client opens
 * a new one. A failure prints `SEED=<n>` (replay: `UNDERSTUDY_SEED=<n>`).
 */
import { FastSim, Prng, Seeds } from "@understudy/testkit"
import { Codec } from "@understudy/transport"
import { Result } from "effect"
import { describe, expect, it } from "vitest"
import * as Association from "../src/Association.ts"
import * as EndpointMachine from "../src/Machine.ts"
import * as Packet from "../src/Packet.ts"

const client = "10.0.0.1"
const server = "10.0.0.2"
/** The server's second address. */
const serverAlternate = "10.0.0.3"
const udpPort = 9899
const sctpPort = 5000
const streams = 4
/** Faults until then; messages are sent until then too. */
const faultsEndMs = 4_000
/** After the heal: time to retransmit what the faults held back (RTO at most 2 s). */
const durationMs = faultsEndMs + 10_000
/** Seeded schedules per run of the suite (10-20 ms each at load 30). */
const schedules = 160
const pathDownSchedules = 40
const crashSchedules = 40

const codec = Codec.make<Packet.Packet>({
  name: "sctp",
  encode: Packet.encode,
  decode: (bytes) => {
    const decoded = Packet.decode(bytes)
    if (Result.isFailure(decoded)) throw new Error(`undecodable: ${decoded.failure._tag}`)
    return decoded.success
  },
})

const config: Association.Config = {
  ...Association.defaultConfig,
  localPort: sctpPort,
  rtoInitialMs: 300,
  rtoMinMs: 200,
  rtoMsMax: 2_000,
  heartbeatIntervalMs: 1_000,
  sackDelayMs: 50,
  // Partitions last seconds: the association must outlive them, not give up; a path is
  // given up on (and the other one used) after two retransmissions.
  associationMaxRetrans: 1_000,
  pathMaxRetrans: 2,
  initRetransmitsMax: 1_000,
}

/**
 * A server with two addresses, the second listed in its INIT ACK: its packets leave from
 * the first unless that one is down (as an OS picks a source address on an interface that
 * is up).
 */
/** The machine of both nodes: the server lists its second address. */
const endpointMachine = (nodeConfig: Association.Config) =>
  EndpointMachine.make({
    config: (self) =>
      self === server ? { ...nodeConfig, localAddresses: [server, serverAlternate] } : nodeConfig,
    listening: true,
    seed: 7,
  })

const multihomed = {
  machine: endpointMachine(config),
  routing: {
    addressOf: (node) => ({ host: node, udpPort }),
    nodeOf: (address) =>
      address.host === client
        ? client
        : address.host === server || address.host === serverAlternate
          ? server
          : undefined,
    source: (from, _to, up) => {
      const primary = { host: from, udpPort }
      return from === server && !up(primary) ? { host: serverAlternate, udpPort } : primary
    },
    describe: (address) => `${address.host}:${address.udpPort}`,
  } satisfies FastSim.Routing<Association.PeerAddress>,
}

const established = (state: EndpointMachine.State | undefined): number | undefined => {
  if (state === undefined) return undefined
  for (const [id, association] of state.associations)
    if (Association.stateName(association) === "Established") return id
  return undefined
}

/** One seeded run, with its own record of what was sent. */
const runSeed = (
  seed: number,
  setup: {
    readonly machine: ReturnType<typeof EndpointMachine.make>
    readonly routing: FastSim.Routing<Association.PeerAddress>
    readonly faults?: FastSim.Options<unknown, unknown>["faults"]
    readonly addressFaults?: ReadonlyArray<FastSim.AddressFault<Association.PeerAddress>>
    /** Nodes crash and restart: the client opens a new association whenever it has none. */
    readonly crashes?: boolean
  },
) => {
  const peerOf = (node: string) => (node === client ? server : client)
  /**
   * Disruptions so far: a node's machine lost or re-initialised, an association aborted
   * (`CommLost`) or restarted. What was sent before the last one may be lost; what was
   * sent since must arrive.
   */
  let epoch = 0
  /** Per sender: the numbers sent (the PPID), each on stream `n % streams`, with their epoch. */
  const sent = new Map<string, Map<number, number>>([
    [client, new Map()],
    [server, new Map()],
  ])
  const nextNumber = new Map<string, number>([
    [client, 1],
    [server, 1],
  ])
  /** Per receiver and stream: the last number delivered. */
  const lastDelivered = new Map<string, number>()
  const delivered = new Map<string, Set<number>>([
    [client, new Set()],
    [server, new Set()],
  ])
  let seen = 0
  /** Each node's machine state as last seen: another object is another incarnation. */
  const incarnation = new Map<string, EndpointMachine.State | undefined>()
  /**
   * Per node: its peer's machine was lost while they had an association established; it
   * must see that association aborted or restarted (RFC 9260 §8.4 answers the old tag with
   * an ABORT, §5.2.4 restarts on the new INIT's COOKIE ECHO), unless it is lost itself.
   */
  const mustNotice = new Set<string>()
  /** Per node: crashes of its peer it noticed (an ABORT or a restart). */
  const noticed = new Map<string, number>([
    [client, 0],
    [server, 0],
  ])

  type View = FastSim.View<
    EndpointMachine.State,
    Packet.Packet,
    EndpointMachine.Command,
    EndpointMachine.Event,
    Association.PeerAddress
  >
  /** A node whose state object changed was crashed or restarted: it starts afresh. */
  const incarnations = (view: View) => {
    for (const node of [client, server]) {
      const state = view.states.get(node)
      if (!incarnation.has(node)) {
        incarnation.set(node, state)
        continue
      }
      if (incarnation.get(node) === state) continue
      incarnation.set(node, state)
      epoch++
      mustNotice.delete(node)
      for (let stream = 0; stream < streams; stream++) lastDelivered.delete(`${node}/${stream}`)
      if (state === undefined && established(view.states.get(peerOf(node))) !== undefined)
        mustNotice.add(peerOf(node))
    }
  }
  const deliveredOnceInOrder = (view: View): string | undefined => {
    incarnations(view)
    for (; seen < view.events.length; seen++) {
      const { node, event } = view.events[seen]!
      if (event._tag !== "Association") continue
      const inner = event.event
      if (inner._tag === "Restart" || inner._tag === "CommLost") {
        epoch++
        const aborted = inner._tag === "Restart" || inner.reason.startsWith("Abort")
        if (aborted && mustNotice.delete(node)) noticed.set(node, noticed.get(node)! + 1)
        continue
      }
      if (inner._tag === "SendFailed") {
        // Not sent after all (the buffer was full, or the association not up).
        sent.get(node)!.delete(inner.ppid)
        continue
      }
      if (inner._tag !== "Message") continue
      const from = peerOf(node)
      if (!sent.get(from)!.has(inner.ppid))
        return `${node} got ${inner.ppid} from ${from}, which it never sent`
      if (delivered.get(node)!.has(inner.ppid))
        return `${node} got ${inner.ppid} from ${from} twice (once before a restart)`
      if (inner.stream !== inner.ppid % streams)
        return `${node} got ${inner.ppid} on stream ${inner.stream}`
      const key = `${node}/${inner.stream}`
      const last = lastDelivered.get(key) ?? 0
      if (inner.ppid <= last)
        return `${node} got ${inner.ppid} on stream ${inner.stream} after ${last}: duplicated or out of order`
      lastDelivered.set(key, inner.ppid)
      delivered.get(node)!.add(inner.ppid)
    }
    return undefined
  }
  const settled = (view: View): string | undefined => {
    if (!view.final) return undefined
    for (const node of [client, server]) {
      if (established(view.states.get(node)) === undefined)
        return `${node} has no established association after the heal`
      if (mustNotice.has(node))
        return `${node} never saw its association aborted or restarted after ${peerOf(node)} lost its`
      const from = peerOf(node)
      const missing = [...sent.get(from)!]
        .filter(([n, sentIn]) => sentIn === epoch && !delivered.get(node)!.has(n))
        .map(([n]) => n)
      if (missing.length > 0)
        return `${node} never got ${missing.length} of ${from}'s messages (first ${missing[0]})`
    }
    return undefined
  }

  const report = FastSim.run({
    machine: setup.machine,
    routing: setup.routing,
    nodes: [client, server],
    seed,
    durationMs,
    ...(setup.faults === undefined ? { schedule: [] } : { faults: setup.faults }),
    ...(setup.addressFaults === undefined ? {} : { addressFaults: setup.addressFaults }),
    link: { ...FastSim.healthyLink, latency: { _tag: "Fixed", ms: 5 } },
    codec,
    commands: [
      {
        atMs: 0,
        node: client,
        command: { _tag: "Connect", peer: { host: server, udpPort }, peerPort: sctpPort },
      },
    ],
    workload: {
      everyMs: 20,
      // With crashes, the client reconnects after the last restart (at the heal at the
      // latest) and both send on the new association for a while.
      endMs: setup.crashes === true ? faultsEndMs + 5_000 : faultsEndMs,
      commands: (_, view) =>
        [client, server].flatMap(
          (
            node,
          ): Array<{
            readonly node: string
            readonly command: EndpointMachine.Command
          }> => {
            const state = view.states.get(node)
            if (setup.crashes === true && node === client && state?.associations.size === 0) {
              const peer = { host: server, udpPort }
              return [{ node, command: { _tag: "Connect" as const, peer, peerPort: sctpPort } }]
            }
            const id = established(state)
            if (id === undefined) return []
            const n = nextNumber.get(node)!
            nextNumber.set(node, n + 1)
            sent.get(node)!.set(n, epoch)
            return [
              {
                node,
                command: {
                  _tag: "Association" as const,
                  id,
                  command: {
                    _tag: "Send" as const,
                    stream: n % streams,
                    ppid: n,
                    data: new Uint8Array(64 + (n % 200)).fill(n & 0xff),
                    unordered: false,
                  },
                },
              },
            ]
          },
        ),
    },
    invariants: [
      { name: "every message delivered once, in order on its stream", check: deliveredOnceInOrder },
      { name: "established and everything delivered after the heal", check: settled },
    ],
    collectEvents: true,
    describeState: (state) =>
      [...state.associations]
        .map(([id, association]) => `${id}:${Association.stateName(association)}`)
        .join(" "),
  })
  return { ...report, noticed }
}

/**
 * Up to three faults of the server's addresses, drawn from the seed: one down, or lossy (up
 * to 50%); every address healthy again when the node-pair faults end.
 */
const addressFaultsOf = (seed: number): Array<FastSim.AddressFault<Association.PeerAddress>> => {
  const random = Prng.make(seed ^ 0xadd5)
  const faults: Array<FastSim.AddressFault<Association.PeerAddress>> = []
  for (let left = random.int(0, 3); left > 0; left--) {
    const address = { host: random.chance(0.5) ? server : serverAlternate, udpPort }
    const atMs = random.int(200, faultsEndMs - 1)
    faults.push(
      random.chance(0.5)
        ? { atMs, address, down: true }
        : { atMs, address, loss: random.int(1, 50) / 100 },
    )
  }
  for (const host of [server, serverAlternate])
    faults.push({ atMs: faultsEndMs, address: { host, udpPort }, down: false, loss: 0 })
  return faults
}

describe("two endpoint machines in FastSim", () => {
  it("over seeded lossy, duplicating, reordering, partitioned schedules, a server address down or lossy: every message once, in order; up again after the heal", () => {
    const seeds = Seeds.seeds(schedules)
    const totals = { messages: 0, dropped: 0, duplicated: 0, reordered: 0 }
    for (const seed of seeds) {
      const report = runSeed(seed, {
        ...multihomed,
        addressFaults: addressFaultsOf(seed),
        faults: {
          endMs: faultsEndMs,
          startMs: 200,
          weights: { crash: 0, restart: 0 },
          degraded: { maxLoss: 0.3, maxDuplicate: 0.2, maxReorder: 0.3, maxLatencyMs: 80 },
        },
      })
      totals.messages += report.events.filter(
        (item) => item.event._tag === "Association" && item.event.event._tag === "Message",
      ).length
      totals.dropped += report.dropped
      totals.duplicated += report.duplicated
      totals.reordered += report.reordered
    }
    console.log(`[endpoint-fastsim] schedules ${seeds.length}: ${JSON.stringify(totals)}`)
    // The schedules carried traffic both ways, and the network did lose, duplicate and
    // reorder it: a run where nothing happened would prove nothing.
    expect(totals.messages).toBeGreaterThan(seeds.length * 100)
    expect(totals.dropped).toBeGreaterThan(0)
    expect(totals.duplicated).toBeGreaterThan(0)
    expect(totals.reordered).toBeGreaterThan(0)
  })

  it("a multihomed server's primary address down for a while: the association moves to the other path and loses nothing", () => {
    const seeds = Seeds.seeds(pathDownSchedules)
    for (const seed of seeds) {
      const random = Prng.make(seed)
      const fromMs = random.int(300, 2_000)
      const untilMs = fromMs + random.int(1_000, 2_000)
      const primary = { host: server, udpPort }
      const report = runSeed(seed, {
        ...multihomed,
        addressFaults: [
          { atMs: fromMs, address: primary, down: true },
          { atMs: untilMs, address: primary, down: false },
        ],
      })
      // While the primary was down, the server still got messages: through the other path.
      const during = report.events.filter(
        (item) =>
          item.node === server &&
          item.atMs >= fromMs + 500 &&
          item.atMs < untilMs &&
          item.event._tag === "Association" &&
          item.event.event._tag === "Message",
      ).length
      if (during === 0)
        throw new Error(
          `SEED=${seed}: no message reached the server in [${fromMs + 500}, ${untilMs}) ms`,
        )
    }
  })

  it("a node's machine lost and re-initialised while its peer keeps its state: the peer sees an ABORT or a restart, nothing is delivered twice or out of order, and the new association carries everything", () => {
    const seeds = Seeds.seeds(crashSchedules)
    const totals = { noticed: 0, messages: 0 }
    for (const seed of seeds) {
      const report = runSeed(seed, {
        ...multihomed,
        // A server that lost its machine silently discards the cookies of the INIT ACKs it
        // sent before (another secret; RFC 9260 §5.1.5): the client gives up on a COOKIE
        // ECHO after Max.Init.Retransmits, as RFC 9260 says, and opens anew.
        machine: endpointMachine({ ...config, initRetransmitsMax: 3 }),
        crashes: true,
        faults: {
          endMs: faultsEndMs,
          startMs: 200,
          // One of the two down at a time, for a while: the other notices, the two start over.
          maxDown: 1,
          gapMs: { minMs: 200, maxMs: 1_000 },
          restartAtEnd: true,
          weights: { crash: 4, restart: 4 },
          degraded: { maxLoss: 0.1, maxDuplicate: 0.1, maxReorder: 0.1, maxLatencyMs: 40 },
        },
      })
      totals.noticed += report.noticed.get(client)! + report.noticed.get(server)!
      totals.messages += report.events.filter(
        (item) => item.event._tag === "Association" && item.event.event._tag === "Message",
      ).length
    }
    console.log(`[endpoint-fastsim] crash schedules ${seeds.length}: ${JSON.stringify(totals)}`)
    // Peers did lose their associations to crashes, and noticed: a run without would prove nothing.
    expect(totals.noticed).toBeGreaterThan(seeds.length / 2)
    expect(totals.messages).toBeGreaterThan(seeds.length * 50)
  })

  it("a node restarted (its init after t = 0) opens with new tags, as a rebooted host would", () => {
    const initiateTag = (nowMs: number) => {
      const machine = endpointMachine(config)
      const { state } = machine.init({ self: client, peers: [server], nowMs })
      const peer = { host: server, udpPort }
      const { outputs } = machine.step(state, {
        _tag: "Command",
        command: { _tag: "Connect", peer, peerPort: sctpPort },
        nowMs,
      })
      const init = outputs.flatMap((output) =>
        output._tag === "Send" && output.message.chunks[0]?._tag === "Init"
          ? [output.message.chunks[0].initiateTag]
          : [],
      )
      expect(init).toHaveLength(1)
      return init[0]
    }
    // The same seed replays at the start, and a restart does not open with the old tag.
    expect(initiateTag(0)).toBe(initiateTag(0))
    expect(initiateTag(1_234)).not.toBe(initiateTag(0))
  })
})
