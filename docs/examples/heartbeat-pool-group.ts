/**
 * Heartbeat pool guide, many clients in one process: the same pool of three servers, and a
 * group of clients that share one UDP socket and one timer; each is granted its seat.
 */
import { once } from "node:events"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createClientGroup, createServer, Signing } from "@understudy/heartbeat-pool"
import { ClusterKey } from "@understudy/transport"
import { freeUdpPorts } from "./support/ports.ts"

export const main = async () => {
  const stateDir = mkdtempSync(join(tmpdir(), "understudy-docs-pool-"))
  const poolSecret = ClusterKey.generate()
  const vendor = Signing.generateVendorKeys()
  const seats = 20
  const license = Signing.signLicense(vendor.privatePem, {
    product: "cad",
    seats,
    expiresAtMs: 4e12,
    sequence: 1,
  })
  const ports = await freeUdpPorts(6)
  const udp = (port: number) => ({ _tag: "Udp" as const, host: "127.0.0.1", port })
  const members = ["s1", "s2", "s3"].map((id, index) => ({
    id,
    peer: udp(ports[index]!),
    client: udp(ports[index + 3]!),
  }))
  const servers = await Promise.all(
    members.map((member) =>
      createServer({
        self: member.id,
        members,
        poolSecret,
        vendorPublicKey: vendor.publicPem,
        stateDir: join(stateDir, member.id),
        license,
        // Quick timings for the example; see the tuning page for what each one costs.
        timing: {
          heartbeatIntervalMs: 50,
          followerTimeoutMs: 300,
          checkTimeoutMs: 100,
          leaderLeaseMs: 200,
          downAfterMs: 200,
          electionStaggerMs: 80,
          leaseMs: 3_000,
        },
      }),
    ),
  )
  // One socket for every client of the group: thousands of clients, a few descriptors.
  const group = await createClientGroup({
    poolSecret,
    bind: udp(0),
    servers: members.map((member) => ({ id: member.id, address: member.client })),
  })
  const signal = AbortSignal.timeout(20_000)
  const grants = []
  for (let index = 0; index < seats; index++) {
    const client = await group.add({ id: `seat-${index}`, product: "cad", heartbeatInterval: 50 })
    grants.push(once(client, "Granted", { signal }))
  }
  const granted = await Promise.all(grants)
  await group.close()
  for (const server of servers) await server.close()
  rmSync(stateDir, { recursive: true })
  return { granted: granted.length, by: new Set(granted.map(([event]) => event.server as string)) }
}

if (import.meta.main) {
  main().then((result) => console.log(result))
}
