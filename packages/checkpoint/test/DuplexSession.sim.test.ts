/**
 * Simulation of two-way sessions through server crashes, on SimNet under the TestClock
 * with a seeded `Random`: the package's real server (`ObjectSession.serve` with a duplex
 * application) on three simulated hosts sharing one store, and the real client
 * (`DuplexSession.connect`) on a fourth, writing uneven chunks at uneven times while it
 * reads the answer. Each seed draws the stream's size, the window, the link delays, a rate
 * of checkpoint writes lost, and one to three kill points: when the client has read so many
 * bytes, the host serving the session crashes — its process reset, or the whole host gone
 * silent — while the client is still writing, and comes back a while later. A crashed
 * host's store calls fail from that moment (its lease lapses, nothing it does after counts).
 *
 * Checked after every seed: the client read exactly the answer to what it wrote (a byte
 * lost or repeated either way changes it), with no refusal.
 *
 * Replay one seed: UNDERSTUDY_SEED=<n> npx vitest run test/DuplexSession.sim.test.ts
 */
import { describe, expect, it } from "@effect/vitest"
import { MemoryStore, Store, StoreError } from "@understudy/store"
import { Seeds } from "@understudy/testkit"
import { Address, SimNet } from "@understudy/transport"
import { Effect, Fiber, Random, Redacted, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as CheckpointStore from "../src/CheckpointStore.ts"
import * as DuplexSession from "../src/DuplexSession.ts"
import * as ObjectSession from "../src/ObjectSession.ts"
import * as Proof from "../src/Proof.ts"
import * as App from "./support/duplexApp.ts"

const clusterKey = Redacted.make(new Uint8Array(Proof.newSecret()))
const prefix = CheckpointStore.defaultPrefix("duplex-sim")
const servers = ["s1", "s2", "s3"]
const port = 7000
/** The TestClock advances this much at a time; kill points are checked between steps. */
const stepMs = 20
/** Simulated time a seed may take before it counts as stalled. */
const simulatedMsMax = 600_000
const noObjects: ObjectSession.ObjectSource = {
  size: () => Effect.succeed(undefined),
  read: () => Effect.succeed(new Uint8Array(0)),
}

/**
 * The store as one host sees it: every call fails once the host is down (a dead process
 * neither renews its lease nor writes), and checkpoint writes are lost at `lossRate`.
 */
const hostStore = (
  store: Store.Store["Service"],
  isDown: () => boolean,
  lossRate: number,
): Store.Store["Service"] => {
  const gate = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E | StoreError.Unavailable> =>
    Effect.suspend(
      (): Effect.Effect<A, E | StoreError.Unavailable> =>
        isDown() ? Effect.fail(new StoreError.Unavailable({ detail: "host down" })) : effect,
    )
  return Store.Store.of({
    ...store,
    get: (key) => gate(store.get(key)),
    range: (key) => gate(store.range(key)),
    put: (key, value, options) =>
      gate(
        Random.next.pipe(
          Effect.flatMap((draw) =>
            key.endsWith("/checkpoint") && draw < lossRate
              ? Effect.fail(new StoreError.Unavailable({ detail: "checkpoint write lost" }))
              : store.put(key, value, options),
          ),
        ),
      ),
    delete: (key, options) => gate(store.delete(key, options)),
    grantLease: (ttlMs) => gate(store.grantLease(ttlMs)),
    keepAlive: (lease) => gate(store.keepAlive(lease)),
    revokeLease: (lease) => gate(store.revokeLease(lease)),
  })
}

const simulate = (seed: number) =>
  Effect.gen(function* () {
    const size = yield* Random.nextIntBetween(1, 400_000)
    const windowBytesMax = yield* Random.nextIntBetween(4_096, 192 * 1024)
    const latencyMs = yield* Random.nextIntBetween(0, 6)
    const lossRate = (yield* Random.next) * 0.05
    const killCount = yield* Random.nextIntBetween(1, 3)
    const killOffsets: Array<number> = []
    for (let i = 0; i < killCount; i++)
      killOffsets.push(yield* Random.nextIntBetween(0, Math.max(0, size - 1)))
    killOffsets.sort((a, b) => a - b)
    const parameters = `seed ${seed}: size ${size} window ${windowBytesMax} latency 0..${latencyMs} ms checkpoint loss ${lossRate.toFixed(3)} kills at ${killOffsets.join(",")}`

    const net = yield* SimNet.make({ link: { latency: SimNet.uniform(0, latencyMs) } })
    const store = yield* Store.Store
    const down = new Set<string>()
    for (const host of servers)
      yield* net.run(
        host,
        Effect.gen(function* () {
          yield* ObjectSession.serve(
            {
              listen: Address.tcp(host, port),
              clusterKey,
              windowBytesMax,
              duplex: App.handler,
            },
            noObjects,
          ).pipe(
            Effect.provideServiceEffect(
              CheckpointStore.CheckpointStore,
              CheckpointStore.make({ serverId: host, backend: "session", prefix, leaseTtl: 300 }),
            ),
            Effect.provideService(
              Store.Store,
              hostStore(store, () => down.has(host), lossRate),
            ),
          )
          return yield* Effect.never
        }),
      )

    const input = App.input(size, seed)
    const client = yield* DuplexSession.connect({
      service: servers.map((host) => Address.tcp(host, port)),
      clusterKey,
      attemptsMax: 1_000,
    }).pipe(Effect.provide(net.layer("client")))
    const writer = yield* Effect.forkScoped(
      Effect.gen(function* () {
        for (let at = 0; at < size; ) {
          const length = yield* Random.nextIntBetween(1, 40_000)
          yield* client.write(input.subarray(at, at + length))
          at += length
          yield* Effect.sleep(yield* Random.nextIntBetween(0, 20))
        }
        yield* client.end
      }),
    )
    let read = 0
    const reader = yield* Effect.forkScoped(
      client.read.pipe(
        Stream.tap((chunk) =>
          Effect.sync(() => {
            read += chunk.length
          }),
        ),
        Stream.runCollect,
      ),
    )
    const kills: Array<string> = []
    for (let elapsed = 0; reader.pollUnsafe() === undefined; elapsed += stepMs) {
      if (elapsed > simulatedMsMax) {
        const trace = SimNet.formatTrace((yield* net.trace).slice(-40))
        return expect.fail(
          `${parameters}: stalled at ${read} of ${size} bytes read; kills ${kills.join(" ")}\n${trace}`,
        )
      }
      if (killOffsets.length > 0 && read >= killOffsets[0]!) {
        killOffsets.shift()
        const owner = yield* store
          .get(CheckpointStore.keys(prefix).owner(client.sessionId() ?? "none"))
          .pipe(Effect.orDie)
        const victim =
          owner._tag === "Some"
            ? new TextDecoder().decode(owner.value.value)
            : servers[yield* Random.nextIntBetween(0, servers.length - 1)]!
        if (!down.has(victim)) {
          const mode = (yield* Random.nextBoolean) ? "host" : "process"
          const downMs = yield* Random.nextIntBetween(0, 3_000)
          kills.push(`${victim}/${mode}@${read}`)
          down.add(victim)
          yield* net.crash(victim, { mode })
          yield* Effect.forkScoped(
            Effect.sleep(downMs).pipe(
              Effect.andThen(Effect.sync(() => down.delete(victim))),
              Effect.andThen(net.restart(victim)),
            ),
          )
        }
      }
      yield* TestClock.adjust(stepMs)
    }
    const answer = yield* Fiber.join(reader).pipe(
      Effect.catchTag("TakeoverRefused", (error) =>
        Effect.sync(() => expect.fail(`${parameters}: refused: ${error.message}`)),
      ),
    )
    yield* Fiber.join(writer)
    const got = App.sha256(answer)
    expect(got, `${parameters}: the answer differs; kills ${kills.join(" ")}`).toBe(
      App.sha256([App.expected(input)]),
    )
    return kills.length
  })

describe("DuplexSession on SimNet: takeovers while the client writes", () => {
  const seeds = Seeds.seeds(150)
  it.effect(
    `${seeds.length} seeded schedules: the answer to every byte written, once, in order`,
    () =>
      Effect.gen(function* () {
        let kills = 0
        for (const seed of seeds)
          kills += yield* simulate(seed).pipe(
            Effect.scoped,
            Effect.provide(MemoryStore.layer),
            Random.withSeed(seed),
          )
        // The schedules took sessions over, not only finished them.
        expect(kills).toBeGreaterThan(seeds.length / 2)
      }),
    300_000,
  )
})
