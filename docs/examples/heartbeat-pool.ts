/**
 * Heartbeat pool guide, Effect style: three license servers on loopback UDP share a
 * two-seat license signed by the vendor; a client is granted a seat; the server holding it
 * stops; the client re-attaches to another server and keeps its seat.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Client, Server, Signing } from "@understudy/heartbeat-pool"
import { Address, ClusterKey, NodeDatagram } from "@understudy/transport"
import { Effect, Exit, Fiber, Scope, Stream } from "effect"
import { freeUdpPorts } from "./support/ports.ts"

// Quick timings for the example (the defaults are for a 200 ms heartbeat).
const timing = {
  heartbeatIntervalMs: 50,
  followerTimeoutMs: 300,
  checkTimeoutMs: 100,
  leaderLeaseMs: 200,
  downAfterMs: 200,
  electionStaggerMs: 80,
  leaseMs: 3_000,
}

export const program = Effect.gen(function* () {
  const stateDir = mkdtempSync(join(tmpdir(), "understudy-docs-pool-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(stateDir, { recursive: true })))
  // The pool key authenticates every datagram; in production, ClusterKey.readFile(path).
  const poolSecret = ClusterKey.generate()
  // The vendor signs the license file; servers only need its public key.
  const vendor = Signing.generateVendorKeys()
  const license = Signing.signLicense(vendor.privatePem, {
    product: "cad",
    seats: 2,
    expiresAtMs: 4e12,
    sequence: 1,
  })
  const ports = yield* Effect.promise(() => freeUdpPorts(6))
  const members = ["s1", "s2", "s3"].map((id, index) => ({
    id,
    peer: Address.udp("127.0.0.1", ports[index]!),
    client: Address.udp("127.0.0.1", ports[index + 3]!),
  }))
  const scopes = new Map<string, Scope.Closeable>()
  for (const member of members) {
    const scope = yield* Scope.make()
    scopes.set(member.id, scope)
    yield* Server.run({
      self: member.id,
      members,
      poolSecret,
      vendorPublicKey: vendor.publicPem,
      stateDir: join(stateDir, member.id),
      license,
      timing,
    }).pipe(Scope.provide(scope))
  }

  const client = yield* Client.run({
    id: "workstation-7",
    product: "cad",
    poolSecret,
    bind: Address.udp("127.0.0.1", 0),
    servers: members.map((member) => ({ id: member.id, address: member.client })),
    heartbeatInterval: "50 millis",
  })
  const seat = (tag: "Granted" | "Reattached") =>
    client.events.pipe(
      Stream.filter((event) => event._tag === tag),
      Stream.runHead,
      Effect.timeout("20 seconds"),
    )
  const granted = yield* seat("Granted")
  const holder = granted._tag === "Some" && "server" in granted.value ? granted.value.server : ""
  // The server that granted the seat stops; the client walks the priority list.
  const reattached = yield* Effect.forkChild(seat("Reattached"))
  yield* Scope.close(scopes.get(String(holder))!, Exit.void)
  const after = yield* Fiber.join(reattached)
  for (const scope of scopes.values()) yield* Scope.close(scope, Exit.void)
  const server = after._tag === "Some" && "server" in after.value ? after.value.server : ""
  return { grantedBy: holder, reattachedTo: server }
}).pipe(Effect.scoped, Effect.provide(NodeDatagram.layer))

if (import.meta.main) {
  Effect.runPromise(program).then((result) => console.log(result))
}
