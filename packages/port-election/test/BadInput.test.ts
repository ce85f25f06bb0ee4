/**
 * Bad input against the supervisor: a peer that has the cluster key (it passes the
 * transport's handshake) but speaks garbage, wrong-schema or out-of-order messages. Expected:
 * the supervisor closes that connection, never registers it, and keeps serving a legitimate
 * subordinate. Also the one Register for a member's id that is not refused: from the same
 * process, over a new connection.
 */
import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Address, Codec, NodeTransport, Transport } from "@understudy/transport"
import { Effect, Exit, Fiber, Queue, Redacted, Schema, Scope, Stream } from "effect"
import fc from "fast-check"
import * as Election from "../src/Election.ts"
import { frameBytesMax, protocolVersion } from "../src/internal/protocol.ts"

const secret = Redacted.make(new Uint8Array(randomBytes(32)))
const anyJson = Codec.json(Schema.Unknown, "any-json")
/** Long, so that closing at registration time-out can not be mistaken for closing on bad input. */
const requestTimeoutMs = 10_000
/** A bad peer must be closed well before the registration time-out. */
const closedWithinMs = 3_000

const tags = [
  "Register",
  "Welcome",
  "Refused",
  "Members",
  "Request",
  "Reply",
  "Command",
  "CommandDone",
  "Acquire",
  "Granted",
  "AcquireRefused",
  "Release",
  "CancelAcquire",
  "Resigning",
  "Inspect",
] as const

const validRegister = (instanceId: string) => ({
  _tag: "Register",
  program: "fuzz-test",
  version: protocolVersion,
  instanceId,
  pid: 4242,
  startedAtMs: 1,
  metadata: {},
  holdings: [],
})

/** The cluster's timing, which a refusal names. */
const settings = { graceMs: 100, keepAliveIntervalMs: 100, keepAliveTimeoutMs: 2_000 }

/** A supervisor, one legitimate subordinate, and a check that both still work. */
const cluster = Effect.gen(function* () {
  const address = Address.abstract(`understudy-fuzz-${randomBytes(6).toString("hex")}`)
  const start = Election.make({
    program: "fuzz-test",
    address,
    secret,
    keepAlive: { interval: 100, timeout: 2_000 },
    requestTimeout: requestTimeoutMs,
    grace: 100,
  })
  const supervisor = yield* start
  const subordinate = yield* start
  yield* supervisor.serve("echo", (payload) => Effect.succeed(payload))
  const healthy = Effect.gen(function* () {
    expect((yield* supervisor.role)._tag).toBe("Supervisor")
    expect(yield* subordinate.role).toEqual({
      _tag: "Subordinate",
      supervisorId: supervisor.instanceId,
    })
    const token = randomBytes(4).toString("hex")
    expect(yield* subordinate.request("echo", { token })).toEqual({ token })
    const members = (yield* supervisor.members).map((m) => m.instanceId).sort()
    expect(members).toEqual([supervisor.instanceId, subordinate.instanceId].sort())
  })
  return { address, supervisor, subordinate, healthy }
})

type Cluster = Effect.Success<typeof cluster>

/**
 * Connects with the right key, sends `messages`, and returns how the connection ended,
 * having checked the registry never held `fuzzerId` (if given) meanwhile.
 */
const fuzzOnce = <A>(
  env: Cluster,
  codec: Codec.Codec<A>,
  messages: ReadonlyArray<A>,
  fuzzerId?: string,
  at: Address.StreamAddress = env.address,
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const transport = yield* Transport.Transport
      const connection = yield* transport.connect(at, {
        codec,
        clusterKey: secret,
        keepAlive: false,
        frameBytesMax: frameBytesMax * 2,
      })
      // The send may fail once the supervisor has closed on an earlier message: that is fine.
      yield* Effect.ignore(connection.sendAll(messages))
      const reason = yield* connection.closed.pipe(
        Effect.timeoutOrElse({
          duration: closedWithinMs,
          orElse: () => Effect.die(new Error(`not closed within ${closedWithinMs} ms`)),
        }),
      )
      expect(reason._tag).not.toBe("LocalClose")
      if (fuzzerId !== undefined) {
        const members = yield* env.supervisor.members
        expect(members.map((m) => m.instanceId)).not.toContain(fuzzerId)
      }
      return reason
    }),
  ).pipe(Effect.provide(NodeTransport.layer))

/** Runs a fast-check property whose body is an Effect, with the cluster checked after each run. */
const property = <T>(
  env: Cluster,
  arbitrary: fc.Arbitrary<T>,
  body: (value: T) => Effect.Effect<unknown, unknown>,
  numRuns = 25,
) =>
  Effect.promise(() =>
    fc.assert(
      fc.asyncProperty(arbitrary, (value) =>
        Effect.runPromise(Effect.andThen(body(value), env.healthy)),
      ),
      { numRuns },
    ),
  )

const live = <A, E>(name: string, test: (env: Cluster) => Effect.Effect<A, E>) =>
  it.live(
    name,
    () =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const env = yield* cluster.pipe(Scope.provide(scope), Effect.provide(NodeTransport.layer))
        yield* test(env).pipe(Effect.ensuring(Scope.close(scope, Exit.void)))
      }),
    60_000,
  )

describe("bad input to the supervisor", () => {
  live("random bytes: closed as a protocol error, the rest goes on", (env) =>
    property(
      env,
      fc.array(fc.uint8Array({ minLength: 0, maxLength: 300 }), { minLength: 1, maxLength: 3 }),
      (payloads) => fuzzOnce(env, Codec.bytes, payloads),
    ),
  )

  live("random JSON: closed, never registered", (env) =>
    property(
      env,
      fc.array(fc.jsonValue({ maxDepth: 3 }), { minLength: 1, maxLength: 3 }),
      (values) => fuzzOnce(env, anyJson, values),
    ),
  )

  live("real tags with wrong fields: closed, never registered", (env) =>
    property(
      env,
      fc.array(
        fc
          .record({
            tag: fc.constantFrom(...tags),
            fields: fc.dictionary(
              fc.constantFrom(
                "id",
                "program",
                "version",
                "instanceId",
                "pid",
                "resource",
                "limit",
                "holdings",
                "members",
              ),
              fc.oneof(
                fc.integer(),
                fc.string(),
                fc.constant(null),
                fc.array(fc.integer(), { maxLength: 2 }),
              ),
            ),
          })
          // A message that happens to be well-formed is not the point here.
          .filter(({ tag, fields }) => !(tag === "Resigning" && Object.keys(fields).length === 0))
          .map(({ tag, fields }) => ({ ...fields, _tag: tag })),
        { minLength: 1, maxLength: 3 },
      ),
      (messages) => fuzzOnce(env, anyJson, messages, "fuzzer"),
    ),
  )

  live("a Register with fields of the wrong type or size: closed as a protocol error", (env) =>
    property(
      env,
      fc.oneof(
        fc.record({
          pid: fc.oneof(fc.string(), fc.double({ noInteger: true }), fc.constant(null)),
        }),
        fc.record({ version: fc.oneof(fc.constant(1.5), fc.string(), fc.constant(null)) }),
        fc.record({ metadata: fc.dictionary(fc.string(), fc.integer(), { minKeys: 1 }) }),
        fc.record({
          holdings: fc.array(
            fc.record({ resource: fc.integer(), limit: fc.string(), permits: fc.boolean() }),
            { minLength: 1, maxLength: 3 },
          ),
        }),
        fc.record({ instanceId: fc.constant("x".repeat(frameBytesMax + 10)) }),
        fc.record({ program: fc.constantFrom(null, 7, ["fuzz-test"]) }),
      ),
      (absurd) =>
        Effect.gen(function* () {
          const fuzzerId = `fuzzer-${randomBytes(4).toString("hex")}`
          // Refused by the decoder (or the frame limit): the supervisor drops the link, so
          // this side sees it end or reset, long before the registration time-out.
          const reason = yield* fuzzOnce(
            env,
            anyJson,
            [{ ...validRegister(fuzzerId), ...absurd }],
            fuzzerId,
          )
          expect(["End", "Reset"]).toContain(reason._tag)
        }),
      20,
    ),
  )

  live("well-formed messages before Register: closed, never registered", (env) =>
    property(
      env,
      fc.constantFrom<ReadonlyArray<Record<string, unknown>>>(
        [{ _tag: "Request", id: "1", operation: "echo", payload: 1 }],
        [{ _tag: "Acquire", id: "1", resource: "r", limit: 1 }],
        [{ _tag: "Release", resource: "r" }],
        [{ _tag: "CancelAcquire", id: "1" }],
        [{ _tag: "CommandDone", id: "1", ok: true, payload: null }],
        [{ _tag: "Members", members: [] }],
        [{ _tag: "Welcome", supervisorId: "me", lost: [] }],
        [{ _tag: "Resigning" }],
      ),
      (messages) =>
        Effect.gen(function* () {
          const reason = yield* fuzzOnce(env, anyJson, messages, "fuzzer")
          expect(reason._tag).toBe("End")
        }),
      16,
    ),
  )

  live(
    "a second Register, or a supervisor's message after Register: dropped from the registry",
    (env) =>
      property(
        env,
        fc.constantFrom<Record<string, unknown>>(
          { _tag: "Register" },
          { _tag: "Welcome", supervisorId: "me", lost: [] },
          { _tag: "Members", members: [] },
          { _tag: "Granted", id: "1", resource: "r" },
          { _tag: "Resigning" },
          { _tag: "Inspect", program: "fuzz-test", version: protocolVersion },
        ),
        (second) =>
          Effect.gen(function* () {
            const fuzzerId = `fuzzer-${randomBytes(4).toString("hex")}`
            const register = validRegister(fuzzerId)
            const follow =
              second._tag === "Register" ? { ...register, instanceId: `${fuzzerId}-again` } : second
            // Registered first (so it is in the registry for a moment), then misbehaves.
            yield* fuzzOnce(env, anyJson, [register, follow])
            const members = (yield* env.supervisor.members).map((m) => m.instanceId)
            expect(members).not.toContain(fuzzerId)
            expect(members).not.toContain(`${fuzzerId}-again`)
          }),
        12,
      ),
  )

  live(
    "a Register that claims the supervisor's own id or a member's: Refused DuplicateInstance",
    (env) =>
      Effect.gen(function* () {
        const members = yield* env.supervisor.members
        for (const member of members) {
          const replies: Array<unknown> = []
          yield* Effect.scoped(
            Effect.gen(function* () {
              const connection = yield* connectByHand(env)
              yield* connection.send(validRegister(member.instanceId))
              yield* Stream.runForEach(connection.messages, (message) =>
                Effect.sync(() => replies.push(message)),
              )
              expect((yield* connection.closed)._tag).toBe("End")
            }),
          ).pipe(Effect.provide(NodeTransport.layer))
          expect(replies).toEqual([
            {
              _tag: "Refused",
              reason: "DuplicateInstance",
              program: "fuzz-test",
              version: protocolVersion,
              settings,
            },
          ])
        }
        yield* env.healthy
        // The refused duplicate did not replace the real member.
        expect((yield* env.supervisor.members).map((m) => m.instanceId).sort()).toEqual(
          members.map((m) => m.instanceId).sort(),
        )
      }),
  )

  live(
    "the same member registering again before its old connection's close is read: the new connection takes its place, permits and all",
    (env) =>
      Effect.gen(function* () {
        const id = `reconnecting-${randomBytes(4).toString("hex")}`
        const old = yield* handMember(env)
        yield* old.connection.send(validRegister(id))
        expect(yield* old.next("Welcome")).toMatchObject({ lost: [] })
        yield* old.connection.send({ _tag: "Acquire", id: "a1", resource: "m", limit: 1 })
        expect(yield* old.next("Granted")).toEqual({ _tag: "Granted", id: "a1", resource: "m" })
        // A real subordinate waits for the mutex.
        const waiterScope = yield* Scope.make()
        const waiter = yield* Effect.forkChild(
          env.subordinate.acquire("m").pipe(Scope.provide(waiterScope)),
        )
        yield* Effect.sleep(100)

        // Its keep-alive timed out on its side: it registers again, holding the mutex,
        // while the supervisor still has the old connection open.
        const renewed = yield* handMember(env)
        yield* renewed.connection.send({
          ...validRegister(id),
          holdings: [{ resource: "m", limit: 1, permits: 1 }],
        })
        expect(yield* renewed.next("Welcome")).toMatchObject({ lost: [] })
        const oldClosed = yield* old.connection.closed.pipe(Effect.timeout(closedWithinMs))
        expect(oldClosed._tag).not.toBe("LocalClose")
        const entries = (yield* env.supervisor.members).filter((m) => m.instanceId === id)
        expect(entries.map((m) => m.holdings)).toEqual([[{ resource: "m", limit: 1, permits: 1 }]])
        // Nothing was granted in between: the waiter still waits...
        yield* Effect.sleep(100)
        expect(waiter.pollUnsafe()).toBeUndefined()
        // ...until the member really goes.
        yield* renewed.connection.close
        yield* Fiber.join(waiter).pipe(Effect.timeout("3 seconds"))
        yield* Scope.close(waiterScope, Exit.void)
        yield* env.healthy
      }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer)),
  )
})

/** A connection to the supervisor with the cluster key, speaking any JSON. */
const connectByHand = (env: Cluster) =>
  Effect.gen(function* () {
    const transport = yield* Transport.Transport
    return yield* transport.connect(env.address, {
      codec: anyJson,
      clusterKey: secret,
      keepAlive: false,
    })
  })

/**
 * A member speaking the protocol by hand, over a connection of its own: `next(tag)` is the
 * next message of that tag it received (others, such as registries, are skipped).
 */
const handMember = Effect.fnUntraced(function* (env: Cluster) {
  const connection = yield* connectByHand(env)
  const received = yield* Queue.unbounded<{ readonly _tag: string }>()
  yield* Effect.forkScoped(
    Stream.runForEach(connection.messages, (message) =>
      Queue.offer(received, message as { readonly _tag: string }),
    ),
  )
  const next = (tag: string): Effect.Effect<unknown> =>
    Effect.flatMap(Queue.take(received), (message) =>
      message._tag === tag ? Effect.succeed(message) : next(tag),
    ).pipe(
      Effect.timeoutOrElse({
        duration: closedWithinMs,
        orElse: () => Effect.die(new Error(`no ${tag} within ${closedWithinMs} ms`)),
      }),
    )
  return { connection, next }
})

/** The registry as `status` sees it: Inspect, and the one reply. */
const inspect = (env: Cluster) =>
  Effect.scoped(
    Effect.gen(function* () {
      const connection = yield* connectByHand(env)
      yield* connection.send({ _tag: "Inspect", program: "fuzz-test", version: protocolVersion })
      const replies = yield* Stream.runCollect(Stream.take(connection.messages, 1))
      return replies[0] as { readonly successor?: { instanceId: string; address: string } }
    }),
  ).pipe(Effect.provide(NodeTransport.layer))

/** The successor the supervisor designated (its one subordinate), once it stands by. */
const successorOf = (env: Cluster) =>
  Effect.gen(function* () {
    for (let attempt = 0; attempt < 200; attempt++) {
      const { successor } = yield* inspect(env)
      if (successor !== undefined) return successor
      yield* Effect.sleep("20 millis")
    }
    return yield* Effect.die(new Error("no successor designated"))
  })

describe("bad input to the successor's standby listener", () => {
  const standbyAddress = (successor: { readonly address: string }) => {
    const parsed = Address.parseStream(successor.address)
    if (parsed instanceof Address.InvalidAddress) throw parsed
    return parsed
  }

  live("random JSON or any message but a Register first: closed; the successor stays", (env) =>
    Effect.gen(function* () {
      const successor = yield* successorOf(env)
      yield* property(
        env,
        fc.oneof(
          fc.array(fc.jsonValue({ maxDepth: 3 }), { minLength: 1, maxLength: 3 }),
          fc.constantFrom<ReadonlyArray<unknown>>(
            [{ _tag: "Welcome", supervisorId: "me", lost: [] }],
            [{ _tag: "Members", members: [] }],
            [{ _tag: "Acquire", id: "1", resource: "r", limit: 1 }],
            [{ _tag: "Inspect", program: "fuzz-test", version: protocolVersion }],
            [{ ...validRegister("fuzzer"), pid: "not a pid" }],
          ),
        ),
        (messages) =>
          Effect.gen(function* () {
            const reason = yield* fuzzOnce(
              env,
              anyJson,
              messages,
              "fuzzer",
              standbyAddress(successor),
            )
            expect(["End", "Reset"]).toContain(reason._tag)
            expect((yield* inspect(env)).successor).toEqual(successor)
          }),
        20,
      )
    }),
  )

  live("a pre-registration of another program, version or an invalid one: Refused", (env) =>
    Effect.gen(function* () {
      const successor = yield* successorOf(env)
      const cases = [
        [{ ...validRegister("fuzzer"), program: "other" }, "DifferentProgram"],
        [{ ...validRegister("fuzzer"), version: protocolVersion + 1 }, "IncompatibleVersion"],
        [{ ...validRegister("fuzzer"), pid: -1 }, "InvalidRegistration"],
      ] as const
      for (const [register, reason] of cases) {
        const replies: Array<unknown> = []
        yield* Effect.scoped(
          Effect.gen(function* () {
            const transport = yield* Transport.Transport
            const connection = yield* transport.connect(standbyAddress(successor), {
              codec: anyJson,
              clusterKey: secret,
              keepAlive: false,
            })
            yield* connection.send(register)
            yield* Stream.runForEach(connection.messages, (message) =>
              Effect.sync(() => replies.push(message)),
            )
            expect((yield* connection.closed)._tag).toBe("End")
          }),
        ).pipe(Effect.provide(NodeTransport.layer))
        expect(replies).toEqual([
          { _tag: "Refused", reason, program: "fuzz-test", version: protocolVersion, settings },
        ])
      }
      expect((yield* inspect(env)).successor).toEqual(successor)
      yield* env.healthy
    }),
  )
})
