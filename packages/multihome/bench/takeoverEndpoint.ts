/**
 * The endpoint's CPU for many takeovers' probe timers at once (the follow-up of
 * `bench/takeoverProbe.ts`, which times the association's steps alone): N associations
 * (100, 1,000) are replicated by a primary endpoint (`beforeOutputs` snapshots, as the
 * every-update policy keeps them), the primary's host crashes, and a second endpoint adopts
 * every copy at the same instant, so N takeover holes are probed with HEARTBEATs at the
 * shipped 10 ms pace at once. Measured: the process's CPU (user + system) over the first
 * simulated second after the adoption (the holes' RTO), the HEARTBEATs sent, and the CPU per
 * HEARTBEAT. Two peers: `answering` (the peer endpoint acknowledges each HEARTBEAT: the CPU is
 * the copy's and the peers' together, theirs being what a HEARTBEAT ACK costs; one peer
 * endpoint per association, as an association is one per pair of addresses and ports) and
 * `silent` (the peers' hosts crashed too: one HEARTBEAT outstanding per association, so the
 * probe timers fire and find nothing to send: the timers' own cost).
 *
 * Real `Endpoint` code (driver, lock, timer table, sleeper) on `SimNet` and `TestClock`, moved
 * 1 ms at a time, so the work is exact and the CPU is the process's own (noisy on a loaded
 * machine: write the load beside it). Prints a table, then one JSON line.
 *
 * Run: `npm exec -- node bench/takeoverEndpoint.ts` (in packages/multihome).
 */
import { Address, SimNet } from "@understudy/transport"
import { Effect, Fiber, Random } from "effect"
import { TestClock } from "effect/testing"
import * as Association from "../src/Association.ts"
import * as Endpoint from "../src/Endpoint.ts"

const counts = [100, 1_000]
/** `none`: the same, with nothing adopted: the cost of moving the simulation itself. */
const peers = ["answering", "silent", "none"] as const
const serverPort = 5000
const clientPort = 5001
const probedMs = 1_000

const advance = (ms: number) =>
  Effect.gen(function* () {
    for (let elapsed = 0; elapsed < ms; elapsed++) yield* TestClock.adjust(1)
  })

const packetsOut = (endpoint: Endpoint.Endpoint) =>
  Effect.map(endpoint.stats, (stats) => stats.packetsOut)

const measure = (associations: number, peer: (typeof peers)[number]) =>
  Effect.gen(function* () {
    const net = yield* SimNet.make({ link: { latency: SimNet.fixed(1) } })
    const replicas = new Map<number, Association.Snapshot>()
    const config = { localAddresses: ["10.0.0.1", "10.0.0.2"], heartbeatInterval: 30_000 }
    const primary = yield* Endpoint.make({
      bind: Address.udp("10.0.0.1", 9899),
      seed: yield* Random.nextIntBetween(0, 0x7fffffff),
      port: serverPort,
      listen: true,
      backlog: associations,
      config,
      hooks: {
        beforeOutputs: (update) =>
          Effect.sync(() => {
            replicas.set(update.associationId, Association.snapshot(update.state))
          }),
      },
    }).pipe(Effect.provide(net.layer("10.0.0.1")))
    const secrets = yield* primary.listenerSecrets
    // One peer endpoint per association (an association is one per pair of addresses and
    // ports), each on a host of its own.
    const peerHosts = Array.from(
      { length: associations },
      (_, i) => `10.1.${Math.floor(i / 250)}.${(i % 250) + 1}`,
    )
    const connecting = yield* Effect.forkScoped(
      Effect.forEach(
        peerHosts,
        (host) =>
          Effect.gen(function* () {
            const client = yield* Endpoint.make({
              bind: Address.udp(host, 9899),
              seed: yield* Random.nextIntBetween(0, 0x7fffffff),
              port: clientPort,
            }).pipe(Effect.provide(net.layer(host)))
            yield* client.connect({ host: "10.0.0.1", udpPort: 9899, port: serverPort })
          }),
        { concurrency: 64, discard: true },
      ),
    )
    for (let ms = 0; ms < 60_000 && connecting.pollUnsafe() === undefined; ms += 10)
      yield* TestClock.adjust(10)
    yield* Fiber.join(connecting)
    yield* advance(50)
    if (replicas.size !== associations)
      throw new Error(`${replicas.size} replicas of ${associations} associations`)

    yield* net.crash("10.0.0.1", { mode: "host" })
    if (peer !== "answering") for (const host of peerHosts) yield* net.crash(host, { mode: "host" })
    const secondary = yield* Endpoint.make({
      bind: Address.udp("10.0.0.2", 9899),
      seed: yield* Random.nextIntBetween(0, 0x7fffffff),
      port: serverPort,
      listen: true,
      config,
    }).pipe(Effect.provide(net.layer("10.0.0.2")))
    yield* secondary.adoptListenerSecrets(secrets)
    const packetsBefore = yield* packetsOut(secondary)
    const cpuBefore = process.cpuUsage()
    const wallBefore = performance.now()
    if (peer !== "none")
      for (const snapshot of replicas.values())
        yield* secondary.adopt(Association.restore(secondary.config, snapshot))
    yield* advance(probedMs)
    const cpu = process.cpuUsage(cpuBefore)
    const wallMs = performance.now() - wallBefore
    const packets = (yield* packetsOut(secondary)) - packetsBefore
    return { cpuMs: (cpu.user + cpu.system) / 1_000, wallMs, packets }
  }).pipe(Effect.scoped, Effect.provide(TestClock.layer()), Random.withSeed(associations))

const main = Effect.gen(function* () {
  yield* measure(100, "answering") // warm-up, not reported
  const rows: Array<Record<string, number | string>> = []
  console.log(
    `adopted at once, probed ${probedMs} simulated ms | peer      | CPU ms | packets out | µs CPU per packet | wall ms`,
  )
  for (const associations of counts)
    for (const peer of peers) {
      const { cpuMs, wallMs, packets } = yield* measure(associations, peer)
      rows.push({ associations, peer, cpuMs, packets, usPerPacket: (cpuMs * 1_000) / packets })
      console.log(
        `${String(associations).padStart(40)} | ${peer.padEnd(9)} | ${cpuMs.toFixed(0).padStart(6)} | ${String(packets).padStart(11)} | ${((cpuMs * 1_000) / packets).toFixed(1).padStart(17)} | ${wallMs.toFixed(0)}`,
      )
    }
  console.log(JSON.stringify({ probedMs, rows }))
})

Effect.runPromise(main)
