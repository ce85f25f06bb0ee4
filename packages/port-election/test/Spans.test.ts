/**
 * The spans a failover leaves in the user's tracer: each instance's election (bind or
 * connect), the successor's takeover, and the survivors' registrations again.
 */
import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Eventually, TestTracer } from "@understudy/testkit"
import { Address, type Connection, NodeTransport, Transport } from "@understudy/transport"
import { Deferred, Effect, Exit, Layer, Redacted, Scope, Stream } from "effect"
import * as Election from "../src/Election.ts"

/**
 * The Node transport, adding to `seen` the instance id of every Register read on a listener
 * other than the election address's: the pre-registrations at this instance as successor.
 */
const preRegistrationsRecorded = (electionAddress: string, seen: Set<string>) =>
  Layer.effect(
    Transport.Transport,
    Effect.gen(function* () {
      const transport = yield* Transport.Transport
      const record = <A>(connection: Connection.Connection<A>): Connection.Connection<A> => ({
        ...connection,
        messages: Stream.tap(connection.messages, (message) =>
          Effect.sync(() => {
            const { _tag, instanceId } = message as { _tag?: unknown; instanceId?: unknown }
            if (_tag === "Register" && typeof instanceId === "string") seen.add(instanceId)
          }),
        ),
      })
      return Transport.Transport.of({
        listen: (at, options) =>
          Address.format(at) === electionAddress
            ? transport.listen(at, options)
            : Effect.map(transport.listen(at, options), (listener) => ({
                ...listener,
                connections: Stream.map(listener.connections, record),
              })),
        connect: transport.connect,
      })
    }),
  ).pipe(Layer.provide(NodeTransport.layer))

/** Only a hang guard: nothing the test configures bounds these steps (tens of ms when quiet). */
const within = { within: "10 seconds" } as const

describe("port-election spans", () => {
  it.live(
    "an election per instance, the successor's takeover, and the members' registrations again",
    () => {
      const recorder = TestTracer.make()
      const ended = (name: string) => recorder.ended(name).map(TestTracer.attributes)
      return Effect.gen(function* () {
        const address = Address.abstract(`understudy-test-${randomBytes(6).toString("hex")}`)
        const secret = Redacted.make(new Uint8Array(randomBytes(32)))
        const scopes = yield* Effect.forEach([0, 1, 2], () => Scope.make())
        const preRegistered = [new Set<string>(), new Set<string>(), new Set<string>()]
        const start = (index: number) =>
          Election.make({
            program: "test",
            address,
            secret,
            // Nobody here hangs (the supervisor's scope closes its connections), so a long
            // time-out changes no outcome; a short one would drop a member on a busy machine,
            // and a survivor stops waiting for the successor's takeover after it.
            keepAlive: { interval: 200, timeout: 10_000 },
            grace: 500,
          }).pipe(
            Scope.provide(scopes[index]!),
            Effect.provide(
              preRegistrationsRecorded(Address.format(address), preRegistered[index]!),
            ),
          )
        const first = yield* start(0)
        const second = yield* start(1)
        const third = yield* start(2)
        expect(ended("port-election.election").map((a) => a["understudy.outcome"])).toEqual([
          "bound",
          "connected",
          "connected",
        ])
        expect(ended("port-election.takeover")).toMatchObject([
          { "understudy.instance": first.instanceId, "understudy.successor": false },
        ])
        expect(ended("port-election.register")).toMatchObject([
          { "understudy.again": false, "understudy.outcome": "welcomed" },
          { "understudy.again": false, "understudy.outcome": "welcomed" },
        ])

        // The registry names a successor, and the other survivor stands by at it.
        const elected = yield* Deferred.make<string>()
        for (const instance of [second, third]) {
          yield* Effect.forkChild(
            Stream.runForEach(instance.events, (event) =>
              event._tag === "Elected" ? Deferred.succeed(elected, event.instanceId) : Effect.void,
            ),
          )
        }
        // Before the supervisor goes: the designated successor (either survivor) has read the
        // other survivor's pre-registration on its standby listener.
        yield* Eventually.effect(
          "a survivor's pre-registration read at the other",
          Effect.sync(
            () =>
              preRegistered[1]!.has(third.instanceId) || preRegistered[2]!.has(second.instanceId),
          ),
          within,
        )
        yield* Scope.close(scopes[0]!, Exit.void)
        const winner = yield* Deferred.await(elected).pipe(Effect.timeout("10 seconds"))
        const other = winner === second.instanceId ? third : second
        expect(preRegistered[winner === second.instanceId ? 1 : 2]).toContain(other.instanceId)
        yield* Eventually.effect(
          // Not just subordinate: it may not have read the old supervisor's close yet.
          "the other survivor the winner's subordinate",
          Effect.map(
            other.role,
            (role) => role._tag === "Subordinate" && role.supervisorId === winner,
          ),
          within,
        )
        expect(yield* other.role).toEqual({ _tag: "Subordinate", supervisorId: winner })
        // The takeover's span ends, final attributes and all, just after its Elected event.
        yield* Eventually.effect(
          "the successor's takeover span ended",
          Effect.sync(() => ended("port-election.takeover").length >= 2),
          within,
        )

        const takeovers = ended("port-election.takeover")
        expect(takeovers).toHaveLength(2)
        expect(takeovers[1]).toMatchObject({
          "understudy.instance": winner,
          "understudy.successor": true,
        })
        // The other survivor stood by at the successor: welcomed over its standby link.
        expect(takeovers[1]!["understudy.welcomed"]).toBe(1)
        const again = ended("port-election.register").filter((a) => a["understudy.again"] === true)
        expect(again).toMatchObject([
          {
            "understudy.instance": other.instanceId,
            "understudy.standby": true,
            "understudy.outcome": "welcomed",
            "understudy.supervisor": winner,
          },
        ])
        for (const scope of [scopes[1]!, scopes[2]!]) yield* Scope.close(scope, Exit.void)
      }).pipe(recorder.provide)
    },
  )
})
