/**
 * Heartbeat pool guide, Promise style: the same pool of three servers; one client is
 * granted the only seat, a second is denied for capacity.
 */
import { once } from "node:events"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createClient, createServer, Signing } from "@understudy/heartbeat-pool"
import { ClusterKey } from "@understudy/transport"
import { freeUdpPorts } from "./support/ports.ts"

export const main = async () => {
  const stateDir = mkdtempSync(join(tmpdir(), "understudy-docs-pool-"))
  const poolSecret = ClusterKey.generate()
  const vendor = Signing.generateVendorKeys()
  const license = Signing.signLicense(vendor.privatePem, {
    product: "cad",
    seats: 1,
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
  const clientOptions = (id: string) => ({
    id,
    product: "cad",
    poolSecret,
    bind: udp(0),
    servers: members.map((member) => ({ id: member.id, address: member.client })),
    heartbeatInterval: 50,
  })
  const signal = AbortSignal.timeout(20_000)
  const first = await createClient(clientOptions("first"))
  const [granted] = await once(first, "Granted", { signal })
  const second = await createClient(clientOptions("second"))
  let denied: { reason: string } | undefined
  // A Denied may first say the pool is still settling; wait for the capacity answer.
  while (denied?.reason !== "capacity") [denied] = await once(second, "Denied", { signal })
  await first.release()
  for (const item of [first, second, ...servers]) await item.close()
  rmSync(stateDir, { recursive: true })
  return { firstGrantedBy: granted.server as string, secondDenied: denied.reason }
}

if (import.meta.main) {
  main().then((result) => console.log(result))
}
