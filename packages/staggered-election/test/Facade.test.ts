/**
 * `createServer` (the Promise facade) against a name server started with a cluster key: with
 * `storeClusterKey` it registers as master and serves; the name server holds its holder. It runs
 * with the caller's logger and tracer.
 */
import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Authentication } from "@understudy/machine"
import { MemoryStore, NameServer, RemoteStore, StoreServer } from "@understudy/store"
import { Ports, TestTracer } from "@understudy/testkit"
import { Address, NodeTransport, type Observability } from "@understudy/transport"
import { Effect, Layer, Option, Redacted, Schedule, Schema } from "effect"
import { createServer } from "../src/Facade.ts"

describe("createServer", () => {
  it.live(
    "registers with a keyed name server through storeClusterKey; logs and spans go to the caller's logger and tracer",
    () =>
      Effect.gen(function* () {
        const logs: Array<Observability.LogEntry> = []
        const tracer = TestTracer.make()
        const key = Redacted.make(new Uint8Array(randomBytes(32)))
        const nameServer = yield* StoreServer.serve(Address.tcp("127.0.0.1", 0), {
          clusterKey: key,
        }).pipe(Effect.provide(Layer.merge(MemoryStore.layer, NodeTransport.layer)))
        const [port] = yield* Effect.promise(() => Ports.freeUdpPorts(1))
        const server = yield* Effect.acquireRelease(
          Effect.promise(() =>
            createServer<number, number, number>({
              logger: (entry) => logs.push(entry),
              layer: tracer.layer,
              group: "keyed",
              self: "only",
              servers: [{ id: "only", capacity: { cpu: 1, bandwidthMbps: 1 } }],
              addresses: { only: `udp://127.0.0.1:${port}` },
              authentication: Authentication.keyed(new Uint8Array(randomBytes(32))),
              store: Address.format(nameServer.address),
              storeClusterKey: key,
              request: Schema.Number,
              initial: 0,
              apply: (total, add) => [total + add, total + add],
              detectionPeriod: 20,
              inquiryTimeout: 100,
              baseDelay: 20,
              submitTimeout: 500,
            }),
          ),
          (server) => Effect.promise(() => server.close()),
        )
        // Bounded: the answer needs the registration, which needs the key.
        const total = yield* Effect.tryPromise(() =>
          server.submit({ clientId: "c", requestId: 1, request: 5 }),
        ).pipe(
          Effect.retry({ times: 100, schedule: Schedule.spaced("20 millis") }),
          Effect.timeout("10 seconds"),
        )
        expect(total).toBe(5)
        const holder = yield* NameServer.NameServer.pipe(
          Effect.flatMap((names) => names.resolve("keyed")),
          Effect.provide(
            NameServer.layer.pipe(
              Layer.provide(RemoteStore.layer({ address: nameServer.address, clusterKey: key })),
              Layer.provide(NodeTransport.layer),
            ),
          ),
        )
        expect(Option.map(holder, (h) => h.holder)).toEqual(Option.some("only"))
        // Its election and registration were spans of the caller's tracer; its change of role
        // reached the caller's logger, annotated with the node, its group, role and term.
        const [election] = tracer.ended("staggered-election.election")
        expect(TestTracer.attributes(election!)).toMatchObject({ outcome: "won" })
        expect(tracer.ended("staggered-election.register").length).toBeGreaterThanOrEqual(1)
        const becameMaster = logs.find((entry) => /^role: \w+ -> master/.test(entry.message))
        expect(becameMaster?.level).toBe("Info")
        expect(becameMaster?.annotations).toMatchObject({
          node: "only",
          group: "keyed",
          role: "master",
          term: election!.attributes.get("term"),
        })
      }).pipe(Effect.scoped),
  )
})
