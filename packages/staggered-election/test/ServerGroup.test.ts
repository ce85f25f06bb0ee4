/**
 * The driver in one process: 5 servers sharing a memory name server. Election, the name
 * server's view, redirects, exactly-once retries, failover when the master's scope closes,
 * and a master the name server replaced refusing to answer run on SimNet under the TestClock:
 * with a 100 ms inquiry time-out on a real clock, a stall of the loaded test process made a
 * backup drop its master between two assertions; simulated time only moves when the test
 * moves it. The write-ahead-log test keeps real sockets, files and clock (every step of it
 * retries a master change); the group as real processes is the root test workspace's
 * serverGroup.processes.test.ts.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Authentication } from "@understudy/machine"
import { MemoryStore, NameServer, StoreError } from "@understudy/store"
import { Ports } from "@understudy/testkit"
import { Address, NodeDatagram, SimNet } from "@understudy/transport"
import { Deferred, Effect, Layer, Option, Schema, Stream } from "effect"
import * as Client from "../src/Client.ts"
import * as ServerGroup from "../src/ServerGroup.ts"
import { advance, driven } from "./support/clock.ts"

type Req = { readonly key: string; readonly add: number }
type St = Readonly<Record<string, number>>

const RequestSchema = Schema.Struct({ key: Schema.String, add: Schema.Int })

/** A counter per key; the result is the new value. */
const apply = (state: St, request: Req) => {
  const value = (state[request.key] ?? 0) + request.add
  return [{ ...state, [request.key]: value }, value] as const
}

const ids = ["s1", "s2", "s3", "s4", "s5"]
const authentication = Authentication.keyed(new Uint8Array(randomBytes(32)))
// s3 is the most capable (index 1), s1 the least: index order is not name order.
const servers = [
  { id: "s1", capacity: { cpu: 1, bandwidthMbps: 100 } },
  { id: "s2", capacity: { cpu: 2, bandwidthMbps: 100 } },
  { id: "s3", capacity: { cpu: 8, bandwidthMbps: 100 } },
  { id: "s4", capacity: { cpu: 4, bandwidthMbps: 50 } },
  { id: "s5", capacity: { cpu: 4, bandwidthMbps: 100 } },
]

type Server = ServerGroup.ServerGroup<St, Req, number>

const nameServer = NameServer.layer.pipe(Layer.provide(MemoryStore.layer))
const services = Layer.merge(nameServer, NodeDatagram.layer)

const timing = {
  detectionPeriod: 20,
  inquiryTimeout: 100,
  baseDelay: 50,
  floorDelay: 15,
  registrationTtl: "1 second",
  submitTimeout: "2 seconds",
} as const

/** Server `id`'s options in the test group: the counters, `timing`, then `extra`. */
const optionsOf = (
  id: string,
  addresses: ServerGroup.Options<St, Req, number>["addresses"],
  extra: Partial<ServerGroup.Options<St, Req, number>> = {},
): ServerGroup.Options<St, Req, number> => ({
  group: "counters",
  self: id,
  servers,
  addresses,
  authentication,
  request: RequestSchema,
  initial: {},
  apply,
  ...timing,
  ...extra,
})

type Sim = Map<string, { server: Server; stop: Effect.Effect<void> }>

/**
 * The group on a new SimNet (2 ms links), with the name server of the context; each server
 * is a program of its own host whose scope `stop` closes (as `Scope.close` would).
 */
const simGroupWith = (
  apply: ServerGroup.Options<St, Req, number>["apply"],
  extra: Partial<ServerGroup.Options<St, Req, number>> = {},
) =>
  Effect.gen(function* () {
    const names = yield* NameServer.NameServer
    const net = yield* SimNet.make({ link: { latency: SimNet.fixed(2) } })
    const addresses = Object.fromEntries(ids.map((id) => [id, Address.udp(id, 7000)]))
    const running: Sim = new Map()
    for (const id of ids) {
      const started = yield* Deferred.make<Server>()
      const stopping = yield* Deferred.make<void>()
      const stopped = yield* Deferred.make<void>()
      yield* net.run(
        id,
        Effect.gen(function* () {
          const server = yield* ServerGroup.make(optionsOf(id, addresses, { apply, ...extra }))
          yield* Deferred.succeed(started, server)
          yield* Deferred.await(stopping)
        }).pipe(
          Effect.scoped,
          Effect.ensuring(Deferred.succeed(stopped, undefined)),
          Effect.provideService(NameServer.NameServer, names),
        ),
      )
      const server = yield* driven(Deferred.await(started))
      const stop = Effect.andThen(
        Deferred.succeed(stopping, undefined),
        driven(Deferred.await(stopped)),
      )
      running.set(id, { server, stop })
    }
    return running
  })

const simGroup = simGroupWith(apply)

/**
 * The group on loopback UDP (real sockets and clock) at `addresses`, each server with its
 * write-ahead log at `walFile(id)`; every server stops when the scope closes.
 */
const walGroup = (
  addresses: Readonly<Record<string, Address.Udp>>,
  walFile: (id: string) => string,
) =>
  Effect.gen(function* () {
    const running = new Map<string, { server: Server }>()
    for (const id of ids) {
      const server = yield* ServerGroup.make(optionsOf(id, addresses, { walFile: walFile(id) }))
      running.set(id, { server })
    }
    return running
  })

const statuses = (running: Map<string, { server: Server }>) =>
  Effect.forEach([...running.values()], ({ server }) => server.status)

/**
 * Polls until every running server follows one registered master; bounded (400 polls,
 * `wait` between two: the TestClock's by default).
 */
const settled = (
  running: Map<string, { server: Server }>,
  aboveEpoch = 0,
  wait: (ms: number) => Effect.Effect<void> = advance,
) =>
  Effect.gen(function* () {
    const nameServer = yield* NameServer.NameServer
    for (let i = 0; i < 400; i++) {
      const all = yield* statuses(running)
      const masters = all.filter((s) => s.role === "master")
      const holder = yield* nameServer.resolve("counters")
      if (
        masters.length === 1 &&
        masters[0]!.serving &&
        masters[0]!.epoch > aboveEpoch &&
        all.every((s) => s.master === masters[0]!.self && s.epoch === masters[0]!.epoch) &&
        Option.isSome(holder) &&
        holder.value.holder === masters[0]!.self
      ) {
        return { master: masters[0]!, all, holder: holder.value }
      }
      yield* wait(25)
    }
    return yield* Effect.die(
      new Error(`no settled master: ${JSON.stringify(yield* statuses(running))}`),
    )
  })

describe("ServerGroup", () => {
  it.live(
    'reads: "lease" takes a Schema-checked lease; a lease with another read mode, or out of range, or a time-out or election timing that is not a positive duration, is InvalidConfig naming it',
    () =>
      Effect.gen(function* () {
        const [port] = yield* Effect.promise(() => Ports.freeUdpPorts(1))
        type Reads = Partial<ServerGroup.Options<St, Req, number>>
        const refused = (extra: Reads) =>
          ServerGroup.make(
            optionsOf(
              "s1",
              Object.fromEntries(ids.map((id) => [id, Address.udp("127.0.0.1", port!)])),
              extra,
            ),
          ).pipe(Effect.flip)
        const cases: ReadonlyArray<readonly [Reads, RegExp]> = [
          [{ lease: {} }, /lease is set, reads is "linearizable"/],
          [{ reads: "local", lease: { duration: 50 } }, /lease is set, reads is "local"/],
          [{ reads: "lease", lease: { clockDriftMax: 0.5 } }, /clockDriftMax/],
          [
            { reads: "lease", lease: { duration: 0 } },
            /positive duration.*\n.*\["lease"\]\["duration"\]/,
          ],
          [{ reads: "eventual" as never }, /reads/],
          [{ submitTimeout: 0 }, /positive duration.*\n.*\["submitTimeout"\]/],
          [{ submitTimeout: "soon" as never }, /positive duration.*\n.*\["submitTimeout"\]/],
          [
            { registrationTtl: Number.POSITIVE_INFINITY },
            /positive duration.*\n.*\["registrationTtl"\]/,
          ],
          // Each election timing, named, before anything is bound or opened.
          ...(
            [
              "detectionPeriod",
              "inquiryTimeout",
              "baseDelay",
              "floorDelay",
              "unknownDelay",
            ] as const
          ).flatMap((option) =>
            [0, -5, "soon", Number.NaN].map(
              (value) =>
                [
                  { [option]: value as never },
                  new RegExp(`positive duration.*\\n.*\\["${option}"\\]`),
                ] as const,
            ),
          ),
        ]
        for (const [extra, reason] of cases) {
          const error = yield* refused(extra)
          expect(error).toMatchObject({ _tag: "InvalidConfig" })
          expect((error as { reason: string }).reason).toMatch(reason)
        }
        // A refused configuration opens nothing, not even its write-ahead log.
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "server-group-refused-"))
        try {
          const walFile = path.join(dir, "s1.wal")
          for (const extra of [{ detectionPeriod: 0 }, { delayWindow: 0 }, { self: "s9" }]) {
            const error = yield* refused({ ...extra, walFile })
            expect(error).toMatchObject({ _tag: "InvalidConfig" })
            expect(fs.existsSync(walFile), JSON.stringify(extra)).toBe(false)
          }
        } finally {
          fs.rmSync(dir, { recursive: true, force: true })
        }
      }).pipe(Effect.scoped, Effect.provide(services)),
  )

  it.effect(
    "elects one master, which the name server shows; backups redirect with NotMaster",
    () =>
      Effect.gen(function* () {
        const running = yield* simGroup
        const { master, all, holder } = yield* settled(running)
        // With everyone up, the most capable server (index 1) wins.
        expect(master.self).toBe("s3")
        expect(master.index).toBe(1)
        expect(holder.epoch).toBe(master.epoch)
        expect(all.filter((s) => s.role === "backup")).toHaveLength(4)
        expect(master.delays).toContain("s3 (index 1)")

        const backup = running.get("s1")!.server
        const refused = yield* Effect.flip(
          driven(backup.submit({ clientId: "c", requestId: 1, request: { key: "a", add: 1 } })),
        )
        expect(refused).toBeInstanceOf(ServerGroup.NotMaster)
        expect((refused as ServerGroup.NotMaster).master).toBe("s3")

        const result = yield* driven(
          running
            .get("s3")!
            .server.submit({ clientId: "c", requestId: 1, request: { key: "a", add: 5 } }),
        )
        expect(result).toBe(5)
        // Every server applies it (active replication), within a few detection periods.
        for (let i = 0; i < 100; i++) {
          const states = yield* Effect.forEach(
            [...running.values()],
            ({ server }) => server.applied,
          )
          if (states.every((state) => state.a === 5)) break
          yield* advance(20)
        }
        const states = yield* Effect.forEach([...running.values()], ({ server }) => server.applied)
        expect(states.map((state) => state.a)).toEqual([5, 5, 5, 5, 5])
      }).pipe(Effect.scoped, Effect.provide(nameServer)),
    20_000,
  )

  it.effect(
    "read: the master answers with every answered write, a backup redirects, a master cut off from its majority does not answer",
    () =>
      Effect.gen(function* () {
        const running = yield* simGroup
        const { master } = yield* settled(running)
        const server = running.get(master.self)!.server
        yield* driven(server.submit({ clientId: "r", requestId: 1, request: { key: "k", add: 4 } }))
        expect((yield* driven(server.read)).k).toBe(4)
        const backup = [...running.entries()].find(([id]) => id !== master.self)![1].server
        const refused = yield* Effect.flip(driven(backup.read))
        expect(refused).toMatchObject({ _tag: "NotMaster", master: master.self })
        // Three of the five stop: the master keeps its role for a while but cannot confirm.
        const others = [...running.keys()].filter((id) => id !== master.self).slice(0, 3)
        for (const id of others) yield* running.get(id)!.stop
        const cutOff = yield* Effect.flip(driven(server.read))
        expect(["GroupUnavailable", "NotMaster"]).toContain(cutOff._tag)
        // And it stops serving within the inquiry time-out and a detection period (bounded poll).
        let serving = true
        for (let i = 0; i < 200 && serving; i++) {
          serving = (yield* server.status).serving
          if (serving) yield* advance(10)
        }
        expect(serving).toBe(false)
      }).pipe(Effect.scoped, Effect.provide(nameServer)),
    20_000,
  )

  it.effect(
    "the state machine may be an Effect: it runs synchronously on every server",
    () =>
      Effect.gen(function* () {
        const running = yield* simGroupWith((state, request) =>
          Effect.succeed(apply(state, request)),
        )
        yield* settled(running)
        const master = running.get("s3")!.server
        const result = yield* driven(
          master.submit({ clientId: "e", requestId: 1, request: { key: "k", add: 3 } }),
        )
        expect(result).toBe(3)
        for (let i = 0; i < 100; i++) {
          const states = yield* Effect.forEach(
            [...running.values()],
            ({ server }) => server.applied,
          )
          if (states.every((state) => state.k === 3)) break
          yield* advance(20)
        }
        const states = yield* Effect.forEach([...running.values()], ({ server }) => server.applied)
        expect(states.map((state) => state.k)).toEqual([3, 3, 3, 3, 3])
      }).pipe(Effect.scoped, Effect.provide(nameServer)),
    20_000,
  )

  it.effect(
    "a retried request is applied once; the client follows redirects",
    () =>
      Effect.gen(function* () {
        const running = yield* simGroup
        yield* settled(running)
        const master = running.get("s3")!.server
        const submission = { clientId: "retry", requestId: 1, request: { key: "x", add: 10 } }
        const first = yield* driven(master.submit(submission))
        const again = yield* driven(master.submit(submission))
        const third = yield* driven(master.submit(submission))
        expect([first, again, third]).toEqual([10, 10, 10])
        expect((yield* master.applied).x).toBe(10)

        // The client resolves the master from the name server; one whose first answer is
        // outdated (it names the backup s1) is redirected by s1 to the master.
        const servers = Object.fromEntries([...running].map(([id, { server }]) => [id, server]))
        const real = yield* NameServer.NameServer
        let resolves = 0
        const client = yield* Client.make<Req, number>({
          group: "counters",
          clientId: "client-1",
          call: Client.local<Req, number>(servers),
        }).pipe(
          Effect.provideService(NameServer.NameServer, {
            ...real,
            resolve: (role) =>
              resolves++ === 0
                ? Effect.succeed(Option.some({ role, holder: "s1", epoch: 1 }))
                : real.resolve(role),
          }),
        )
        const values: Array<number> = []
        for (let i = 0; i < 20; i++) values.push(yield* driven(client.submit({ key: "y", add: 1 })))
        expect(values).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))
        const stats = yield* client.stats
        expect(stats.redirects).toBe(1)
        expect(stats.failures).toBe(0)
      }).pipe(Effect.scoped, Effect.provide(nameServer)),
    20_000,
  )

  it.effect(
    "fails over when the master's scope closes, without losing an acknowledged request",
    () =>
      Effect.gen(function* () {
        const running = yield* simGroup
        const first = yield* settled(running)
        const servers = Object.fromEntries([...running].map(([id, { server }]) => [id, server]))
        const client = yield* Client.make<Req, number>({
          group: "counters",
          call: (target, sub) =>
            running.has(target.id)
              ? Client.local<Req, number>(servers)(target, sub)
              : Effect.fail(new ServerGroup.GroupUnavailable({ reason: "stopped" })),
        })
        for (let i = 0; i < 10; i++) yield* driven(client.submit({ key: "k", add: 1 }))

        for (let round = 0; round < 2; round++) {
          const before = yield* settled(running)
          const victim = before.master.self
          const stopped = running.get(victim)!
          running.delete(victim)
          yield* stopped.stop
          // Requests keep going through the failover: the client retries with the same ids.
          const during = yield* Effect.forEach(Array.from({ length: 10 }), () =>
            driven(client.submit({ key: "k", add: 1 })),
          )
          const after = yield* settled(running, before.master.epoch)
          expect(after.master.self).not.toBe(victim)
          expect(after.master.epoch).toBeGreaterThan(before.master.epoch)
          expect(during.at(-1)).toBe(20 + round * 10)
        }
        // Every acknowledged increment is there, exactly once, on every survivor.
        for (let i = 0; i < 100; i++) {
          const states = yield* Effect.forEach(
            [...running.values()],
            ({ server }) => server.applied,
          )
          if (states.every((state) => state.k === 30)) break
          yield* advance(20)
        }
        const states = yield* Effect.forEach([...running.values()], ({ server }) => server.applied)
        expect(states.map((state) => state.k)).toEqual([30, 30, 30])
        expect(first.master.self).toBe("s3")
      }).pipe(Effect.scoped, Effect.provide(nameServer)),
    30_000,
  )

  it.effect(
    "a master that could not register through a long name-server outage registers once it is back",
    () => {
      const away = { value: true }
      const flaky = Layer.effect(
        NameServer.NameServer,
        Effect.gen(function* () {
          const names = yield* NameServer.NameServer
          return NameServer.NameServer.of({
            ...names,
            register: (role, holder, epoch, options) =>
              Effect.suspend(() =>
                away.value
                  ? Effect.fail(new StoreError.Unavailable({ detail: "name server away" }))
                  : names.register(role, holder, epoch, options),
              ),
          })
        }),
      ).pipe(Layer.provide(NameServer.layer), Layer.provide(MemoryStore.layer))
      return Effect.gen(function* () {
        const running = yield* simGroupWith(apply, { registerAttemptsMax: 2 })
        // Well past the attempts: the old code gave the registration up for good here.
        yield* advance(1_500)
        const statuses = yield* Effect.forEach([...running.values()], ({ server }) => server.status)
        expect(statuses.some((status) => status.serving)).toBe(false)
        away.value = false
        const master = statuses.find((status) => status.role === "master")!.self
        const result = yield* driven(
          running
            .get(master)!
            .server.submit({ clientId: "n", requestId: 1, request: { key: "n", add: 2 } }),
        )
        expect(result).toBe(2)
      }).pipe(Effect.scoped, Effect.provide(flaky))
    },
    20_000,
  )

  it.effect(
    "a master the name server has replaced refuses to answer",
    () =>
      Effect.gen(function* () {
        const running = yield* simGroup
        const { master } = yield* settled(running)
        const server = running.get(master.self)!.server
        expect(
          yield* driven(
            server.submit({ clientId: "f", requestId: 1, request: { key: "f", add: 1 } }),
          ),
        ).toBe(1)
        // Someone registers a newer epoch of the group (as a successor the master has not
        // heard of would): the master must stop answering at once.
        const nameServer = yield* NameServer.NameServer
        const events: Array<ServerGroup.Event> = []
        yield* Effect.forkScoped(
          Stream.runForEach(server.events, (event) => Effect.sync(() => void events.push(event))),
        )
        // Let the subscription start before the change it must see.
        yield* advance(20)
        yield* nameServer.register("counters", "s1", master.epoch + 4096)
        let fenced: ServerGroup.Status | undefined
        for (let i = 0; i < 200 && fenced === undefined; i++) {
          const status = yield* server.status
          if (status.fencedBy !== null) fenced = status
          else yield* advance(10)
        }
        expect(fenced?.serving).toBe(false)
        expect(fenced?.fencedBy).toBe("s1")
        const refused = yield* Effect.flip(
          driven(server.submit({ clientId: "f", requestId: 2, request: { key: "f", add: 1 } })),
        )
        expect(refused).toEqual(new ServerGroup.NotMaster({ master: "s1" }))
        expect(events).toContainEqual(
          expect.objectContaining({
            _tag: "MasterLost",
            reason: "superseded",
            master: master.self,
          }),
        )
      }).pipe(Effect.scoped, Effect.provide(nameServer)),
    20_000,
  )

  it.live(
    "with a write-ahead log, the whole group stopped and started again keeps every answered write, at a newer epoch",
    () =>
      Effect.gen(function* () {
        const directory = yield* Effect.acquireRelease(
          Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "understudy-group-wal-"))),
          (directory) => Effect.sync(() => fs.rmSync(directory, { recursive: true, force: true })),
        )
        const ports = yield* Effect.promise(() => Ports.freeUdpPorts(ids.length))
        const addresses = Object.fromEntries(
          ids.map((id, i) => [id, Address.udp("127.0.0.1", ports[i]!)]),
        )
        const walFile = (id: string) => path.join(directory, `${id}.wal`)
        const writes = 12
        /** Through whichever server is master now; a master change (a loaded machine) is retried, bounded. */
        const through = <A, E>(
          running: Map<string, { server: Server }>,
          use: (server: Server) => Effect.Effect<A, E>,
        ) =>
          Effect.gen(function* () {
            for (let attempt = 0; attempt < 400; attempt++) {
              const all = yield* statuses(running)
              const master = all.find((status) => status.role === "master" && status.serving)
              if (master !== undefined) {
                const outcome = yield* Effect.result(use(running.get(master.self)!.server))
                if (outcome._tag === "Success") return outcome.success
              }
              yield* Effect.sleep(25)
            }
            return yield* Effect.die(new Error("no master answered"))
          })
        const epochBefore = yield* Effect.scoped(
          Effect.gen(function* () {
            const running = yield* walGroup(addresses, walFile)
            yield* settled(running, 0, Effect.sleep)
            for (let i = 1; i <= writes; i++) {
              yield* through(running, (server) =>
                server.submit({ clientId: "d", requestId: i, request: { key: `k${i}`, add: i } }),
              )
            }
            return Math.max(...(yield* statuses(running)).map((status) => status.epoch))
          }),
        )
        // Every server is stopped now; each starts again from its log alone.
        const running = yield* walGroup(addresses, walFile)
        const { master } = yield* settled(running, epochBefore, Effect.sleep)
        // The term was kept: the new master's epoch is above every epoch used before.
        expect(master.epoch).toBeGreaterThan(epochBefore)
        const state = yield* through(running, (server) => server.read)
        for (let i = 1; i <= writes; i++) expect(state[`k${i}`]).toBe(i)
        // A retry of an answered request is answered from the recovered client table.
        const again = yield* through(running, (server) =>
          server.submit({
            clientId: "d",
            requestId: writes,
            request: { key: `k${writes}`, add: writes },
          }),
        )
        expect(again).toBe(writes)
        expect((yield* through(running, (server) => server.read))[`k${writes}`]).toBe(writes)
      }).pipe(Effect.scoped, Effect.provide(services)),
    60_000,
  )
})
