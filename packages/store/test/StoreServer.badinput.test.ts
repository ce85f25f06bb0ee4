/**
 * Bad input to a `StoreServer`: random bytes, random JSON, requests of the wrong shape and
 * requests over the limits, sent on raw transport connections. Expected: an undecodable
 * frame ends that connection (the transport's `ProtocolError`), a well-formed but invalid
 * request gets a typed `InvalidRequest`, and another client on the same server keeps
 * working throughout.
 */
import { describe, expect, it } from "@effect/vitest"
import { Address, Codec, NodeTransport, Transport } from "@understudy/transport"
import { Context, Deferred, Effect, Fiber, Layer, Option, Result, Stream } from "effect"
import fc from "fast-check"
import * as Protocol from "../src/internal/protocol.ts"
import * as MemoryStore from "../src/MemoryStore.ts"
import * as RemoteStore from "../src/RemoteStore.ts"
import { limits } from "../src/Store.ts"
import * as StoreServer from "../src/StoreServer.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const json = (value: unknown) => encoder.encode(JSON.stringify(value))
const seed = 20_240_601
const probeId = -1
const probe = json({ _tag: "Request", id: probeId, op: { _tag: "Get", key: "/probe" } })

interface Reply {
  readonly _tag: string
  readonly id: number
  readonly error?: { readonly _tag: string; readonly detail?: string }
}

/** A server, a good client of it counting on the store, and raw connections to it. */
const setup = (options: StoreServer.StoreServerOptions = {}) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(Layer.merge(MemoryStore.layer, NodeTransport.layer))
    const server = yield* StoreServer.serve(Address.tcp("127.0.0.1", 0), options).pipe(
      Effect.provideContext(context),
    )
    const transport = Context.get(context, Transport.Transport)
    const good = yield* RemoteStore.make({ address: server.address }).pipe(
      Effect.provideContext(context),
    )
    /** Increments a counter by compare-and-set, all the while; returns how many it did. */
    const goodClient = Effect.gen(function* () {
      yield* good.put("/counter", encoder.encode("0"))
      let done = 0
      for (let i = 0; i < 100_000; i++) {
        const kv = Option.getOrThrow(yield* good.get("/counter"))
        const next = Number(decoder.decode(kv.value)) + 1
        yield* good.put("/counter", encoder.encode(`${next}`), { ifModRevision: kv.modRevision })
        done++
        yield* Effect.sleep(2)
      }
      return done
    })

    /**
     * Sends `payloads` then a probe request on a fresh raw connection; ends when the probe is
     * answered ("answered") or the connection closes (its close reason as seen here).
     */
    const exchange = (payloads: ReadonlyArray<Uint8Array>) =>
      Effect.gen(function* () {
        const conn = yield* transport.connect(server.address, {
          codec: Codec.bytes,
          keepAlive: false,
          frameBytesMax: 8 * 1024 * 1024,
        })
        const replies: Array<Reply> = []
        const answered = Deferred.makeUnsafe<void>()
        yield* Effect.forkScoped(
          Stream.runForEach(conn.messages, (bytes) =>
            Effect.sync(() => {
              const reply = JSON.parse(decoder.decode(bytes)) as Reply
              replies.push(reply)
              if (reply.id === probeId) Deferred.doneUnsafe(answered, Effect.void)
            }),
          ),
        )
        yield* Effect.ignore(conn.sendAll([...payloads, probe]))
        const outcome = yield* Effect.raceFirst(
          Effect.as(Deferred.await(answered), "answered"),
          Effect.map(conn.closed, (reason) => reason._tag),
        ).pipe(Effect.timeout(5_000))
        return { outcome, replies }
      }).pipe(Effect.scoped)

    return { server, goodClient, good, exchange }
  })

/** Whether the server's codec accepts these bytes as a request. */
const decodes = (payload: Uint8Array) => Result.isSuccess(Protocol.serverCodec.decode(payload))

const request = (id: number, op: Record<string, unknown>) => json({ _tag: "Request", id, op })

describe("StoreServer bad input", () => {
  it.live("random bytes end only their own connection", () =>
    Effect.gen(function* () {
      const { server, goodClient, good, exchange } = yield* setup()
      const counting = yield* Effect.forkChild(goodClient)
      const samples = fc.sample(fc.uint8Array({ minLength: 1, maxLength: 512 }), {
        seed,
        numRuns: 60,
      })
      for (const bytes of samples) {
        expect(decodes(bytes)).toBe(false)
        const { outcome, replies } = yield* exchange([bytes])
        expect(outcome).not.toBe("answered")
        expect(replies).toEqual([])
      }
      yield* Fiber.interrupt(counting)
      const kv = Option.getOrThrow(yield* good.get("/counter"))
      expect(Number(decoder.decode(kv.value))).toBeGreaterThan(0)
      // Only the good client's connection is left.
      expect(yield* server.connectionCount).toBe(1)
    }).pipe(Effect.scoped),
  )

  it.live(
    "random JSON and near-miss requests: dropped unless they decode, answered by id if they do",
    () =>
      Effect.gen(function* () {
        const { goodClient, good, exchange } = yield* setup()
        const counting = yield* Effect.forkChild(goodClient)
        const anyValue = fc.oneof(
          fc.string({ maxLength: 8 }),
          fc.integer(),
          fc.double(),
          fc.constant(null),
          fc.boolean(),
          fc.constant("AAEC"),
        )
        /** Mostly `good`, sometimes anything: most samples decode, many do not. */
        const mostly = <A>(good: fc.Arbitrary<A>) =>
          fc.oneof({ arbitrary: good, weight: 6 }, { arbitrary: anyValue, weight: 1 })
        const revision = mostly(fc.integer({ min: -5, max: 50 }))
        const nearMiss = fc.record(
          {
            _tag: fc.oneof(
              { arbitrary: fc.constant("Request"), weight: 10 },
              { arbitrary: fc.constantFrom("Ok", "request"), weight: 1 },
            ),
            id: mostly(fc.nat(1_000_000)),
            op: fc.record(
              {
                _tag: fc.constantFrom(
                  "Get",
                  "Range",
                  "Put",
                  "Delete",
                  "GrantLease",
                  "KeepAlive",
                  "RevokeLease",
                  "Compact",
                  "Watch",
                  "CancelWatch",
                  "Nope",
                ),
                key: mostly(fc.string({ maxLength: 8 })),
                prefix: mostly(fc.string({ maxLength: 8 })),
                value: mostly(fc.constantFrom("AAEC", "", "/w==")),
                lease: mostly(fc.constantFrom("1", "2", "x")),
                ifModRevision: revision,
                ttlMs: mostly(fc.integer({ min: -1, max: 10_000 })),
                revision,
                fromRevision: revision,
                watch: mostly(fc.nat(10)),
              },
              { requiredKeys: ["_tag"] },
            ),
          },
          { requiredKeys: ["_tag", "id", "op"] },
        )
        const samples = [
          ...fc.sample(fc.jsonValue(), { seed, numRuns: 40 }),
          ...fc.sample(nearMiss, { seed, numRuns: 200 }),
        ]
        let accepted = 0
        for (const sample of samples) {
          const payload = json(sample)
          const { outcome, replies } = yield* exchange([payload])
          if (!decodes(payload)) {
            expect(outcome).not.toBe("answered")
            expect(replies).toEqual([])
            continue
          }
          accepted++
          expect(outcome).toBe("answered")
          const id = (sample as { id: number }).id
          const op = (sample as { op: { _tag: string } }).op._tag
          if (op !== "CancelWatch") {
            const answer = replies.find((reply) => reply.id === id)
            expect(answer).toBeDefined()
            if (answer?._tag === "Failed" || answer?._tag === "WatchFailed") {
              expect(["InvalidRequest", "Conflict", "LeaseExpired"]).toContain(answer.error?._tag)
            } else {
              expect(["Ok", "Watching"]).toContain(answer?._tag)
            }
          }
        }
        // The generator must reach the server's handlers, not only its decoder.
        expect(accepted).toBeGreaterThan(10)
        yield* Fiber.interrupt(counting)
        expect(Option.isSome(yield* good.get("/counter"))).toBe(true)
      }).pipe(Effect.scoped),
  )

  it.live("well-formed requests over the limits get InvalidRequest and the connection stays", () =>
    Effect.gen(function* () {
      const { exchange } = yield* setup({ watchesPerConnectionMax: 2 })
      const bigKey = "k".repeat(limits.keyBytesMax + 1)
      const bigValue = Buffer.alloc(limits.valueBytesMax + 1).toString("base64")
      const cases: ReadonlyArray<Record<string, unknown>> = [
        { _tag: "Put", key: bigKey, value: "AA==" },
        { _tag: "Put", key: "/v", value: bigValue },
        { _tag: "Get", key: "" },
        { _tag: "Get", key: "é".repeat(600) },
        { _tag: "Range", prefix: bigKey },
        { _tag: "Put", key: "/v", value: "AA==", ifModRevision: -1 },
        { _tag: "Put", key: "/v", value: "AA==", ifModRevision: 1.5 },
        { _tag: "Delete", key: "/v", ifModRevision: -3 },
        { _tag: "GrantLease", ttlMs: 1 },
        { _tag: "Compact", revision: -1 },
        { _tag: "Watch", prefix: "/", fromRevision: -1 },
        { _tag: "Watch", prefix: bigKey },
      ]
      for (const [index, op] of cases.entries()) {
        const { outcome, replies } = yield* exchange([request(index, op)])
        expect(outcome).toBe("answered")
        const answer = replies.find((reply) => reply.id === index)
        expect(answer?._tag).toMatch(/Failed$/)
        expect(answer?.error?._tag).toBe("InvalidRequest")
      }
      // JSON numbers too large for a double parse as Infinity: a revision no store has.
      const infinite = yield* exchange([
        encoder.encode('{"_tag":"Request","id":50,"op":{"_tag":"GrantLease","ttlMs":1e999}}'),
      ])
      expect(infinite.outcome).toBe("answered")
      expect(infinite.replies.find((reply) => reply.id === 50)?.error?._tag).toBe("InvalidRequest")
      // Past the watch limit of this server.
      const watches = [1, 2, 3].map((id) => request(id, { _tag: "Watch", prefix: "/w/" }))
      const { replies } = yield* exchange(watches)
      const third = replies.find((reply) => reply.id === 3)
      expect(third?._tag).toBe("WatchFailed")
      expect(third?.error?._tag).toBe("InvalidRequest")
      expect(replies.filter((reply) => reply._tag === "Watching")).toHaveLength(2)
    }).pipe(Effect.scoped),
  )

  it.live("a frame over the size limit or a response sent to the server ends that connection", () =>
    Effect.gen(function* () {
      const { goodClient, good, exchange } = yield* setup()
      const counting = yield* Effect.forkChild(goodClient)
      const tooBig = request(1, {
        _tag: "Put",
        key: "/big",
        value: Buffer.alloc(3 * 1024 * 1024).toString("base64"),
      })
      const oversized = yield* exchange([tooBig])
      expect(oversized.outcome).not.toBe("answered")
      const wrongWay = yield* exchange([json({ _tag: "Ok", id: 1, result: { _tag: "Done" } })])
      expect(wrongWay.outcome).not.toBe("answered")
      // A good request before a bad one in the same burst is still carried out (its answer
      // may be lost with the connection).
      const mixed = yield* exchange([
        request(7, { _tag: "Put", key: "/before-bad", value: "AQI=" }),
        encoder.encode("{not json"),
      ])
      expect(mixed.outcome).not.toBe("answered")
      expect(Option.isSome(yield* good.get("/before-bad"))).toBe(true)
      yield* Fiber.interrupt(counting)
      expect(Option.isNone(yield* good.get("/big"))).toBe(true)
    }).pipe(Effect.scoped),
  )
})

describe("StoreServer isolation", () => {
  it.live("a good client keeps its counter exact while others misbehave", () =>
    Effect.gen(function* () {
      const { goodClient, good, exchange } = yield* setup()
      const counting = yield* Effect.forkChild(goodClient)
      for (let i = 0; i < 20; i++) yield* exchange([encoder.encode(`garbage ${i}`)])
      yield* Effect.sleep(50)
      yield* Fiber.interrupt(counting)
      const kv = Option.getOrThrow(yield* good.get("/counter"))
      // Each increment is one compare-and-set on the previous value: the version counts them.
      expect(kv.version - 1).toBe(Number(decoder.decode(kv.value)))
    }).pipe(Effect.scoped),
  )
})
