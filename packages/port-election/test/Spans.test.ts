/**
 * The spans a failover leaves in the user's tracer: each instance's election (bind or
 * connect), the successor's takeover, and the survivors' registrations again.
 */
import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Address, NodeTransport } from "@understudy/transport"
import { Deferred, Effect, Exit, Redacted, Scope, Stream, Tracer } from "effect"
import * as Election from "../src/Election.ts"

describe("port-election spans", () => {
  it.live(
    "an election per instance, the successor's takeover, and the members' registrations again",
    () => {
      const spans: Array<Tracer.NativeSpan> = []
      const tracer = Tracer.make({
        span: (options) => {
          const span = new Tracer.NativeSpan(options)
          spans.push(span)
          return span
        },
      })
      const ended = (name: string) =>
        spans
          .filter((span) => span.name === name && span.status._tag === "Ended")
          .map((span) => Object.fromEntries(span.attributes))
      return Effect.gen(function* () {
        const address = Address.abstract(`understudy-test-${randomBytes(6).toString("hex")}`)
        const secret = Redacted.make(new Uint8Array(randomBytes(32)))
        const scopes = yield* Effect.forEach([0, 1, 2], () => Scope.make())
        const start = (scope: Scope.Scope) =>
          Election.make({
            program: "test",
            address,
            secret,
            keepAlive: { intervalMs: 100, timeoutMs: 600 },
            graceMs: 500,
          }).pipe(Scope.provide(scope), Effect.provide(NodeTransport.layer))
        const first = yield* start(scopes[0]!)
        const second = yield* start(scopes[1]!)
        const third = yield* start(scopes[2]!)
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
        for (let i = 0; i < 100; i++) {
          const members = yield* second.members
          if (members.length === 3) break
          yield* Effect.sleep(20)
        }
        // Time for the designation, the registry naming the successor, and the other
        // survivor's pre-registration at it (tens of ms; generous for a loaded machine).
        yield* Effect.sleep(1_000)
        yield* Scope.close(scopes[0]!, Exit.void)
        const winner = yield* Deferred.await(elected).pipe(Effect.timeout("5 seconds"))
        const other = winner === second.instanceId ? third : second
        for (let i = 0; i < 100 && (yield* other.role)._tag !== "Subordinate"; i++) {
          yield* Effect.sleep(20)
        }
        expect(yield* other.role).toEqual({ _tag: "Subordinate", supervisorId: winner })

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
      }).pipe(Effect.provideService(Tracer.Tracer, tracer))
    },
  )
})
