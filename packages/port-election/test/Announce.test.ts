/**
 * A supervisor grants a permit to a new member only once a registry naming it has gone
 * out. A successor learns from the registry whom to wait for at a takeover; without this,
 * a member granted a permit in the registry's batching delay would be unknown to the
 * successor, which would give the permit to another while the member still held it.
 */
import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Address, NodeTransport, Transport } from "@understudy/transport"
import { Effect, Exit, Redacted, Scope, Stream } from "effect"
import * as Election from "../src/Election.ts"
import { codec, frameBytesMax, type Message, protocolVersion } from "../src/internal/protocol.ts"

describe("grants to a new member", () => {
  it.live("wait for the first registry that names it", () =>
    Effect.gen(function* () {
      const address = Address.abstract(`understudy-test-${randomBytes(6).toString("hex")}`)
      const secret = Redacted.make(new Uint8Array(randomBytes(32)))
      const options = {
        program: "test",
        address,
        secret,
        keepAlive: { interval: 100, timeout: 600 },
        graceMs: 500,
      }
      const scopes = yield* Effect.forEach([0, 1], () => Scope.make())
      const supervisor = yield* Election.make(options).pipe(Scope.provide(scopes[0]!))
      expect((yield* supervisor.role)._tag).toBe("Supervisor")
      // The oldest member: the successor, which learns of newcomers from the registry.
      yield* Election.make(options).pipe(Scope.provide(scopes[1]!))
      yield* Effect.sleep(1_000)

      // A newcomer by hand: its Register and an Acquire in one go, well within the
      // registry's batching delay.
      const instanceId = `newcomer-${randomBytes(4).toString("hex")}`
      const transport = yield* Transport.Transport
      const connection = yield* transport.connect(address, {
        codec,
        frameBytesMax,
        clusterKey: secret,
        keepAlive: false,
      })
      yield* connection.sendAll([
        {
          _tag: "Register",
          program: "test",
          version: protocolVersion,
          instanceId,
          pid: process.pid,
          startedAtMs: Date.now(),
          metadata: {},
          holdings: [],
        },
        { _tag: "Acquire", id: "1", resource: "lock", limit: 1 },
      ] satisfies ReadonlyArray<Message>)
      const received = yield* Stream.runCollect(
        Stream.takeUntil(connection.messages, (message) => message._tag === "Granted"),
      ).pipe(Effect.timeout("5 seconds"))
      const tags = received.map((message) =>
        message._tag === "Members" && message.members.some((m) => m.instanceId === instanceId)
          ? "MembersNamingIt"
          : message._tag,
      )
      // Every member, the successor too, has the registry that names the newcomer (and so
      // tells a successor to wait for it) before the newcomer has its permit.
      expect(tags.at(-1), tags.join(", ")).toBe("Granted")
      expect(tags.indexOf("MembersNamingIt"), tags.join(", ")).toBeGreaterThanOrEqual(0)
      expect(tags.indexOf("MembersNamingIt"), tags.join(", ")).toBeLessThan(tags.length - 1)
      for (const scope of [scopes[1]!, scopes[0]!]) yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer)),
  )
})
