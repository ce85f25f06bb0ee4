/**
 * Heartbeat pool guide, leasing any resource: three servers lease out 2 render slots defined
 * in code (no license file, no vendor key: the pool key signs the resource). Two workers get
 * a slot, a third is denied for capacity until one gives its slot back.
 */
import { once } from "node:events"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createClient, createServer, type Resource } from "@understudy/heartbeat-pool"
import { ClusterKey } from "@understudy/transport"
import { freeUdpPorts } from "./support/ports.ts"

export const main = async () => {
  const stateDir = mkdtempSync(join(tmpdir(), "understudy-docs-resource-"))
  // The pool key authenticates every datagram and signs the resource.
  const poolSecret = ClusterKey.generate()
  // Every server is given the same definition; raise `version` to change it on a running pool.
  const renderSlots: Resource.Resource = { name: "render-slot", capacity: 2 }
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
        stateDir: join(stateDir, member.id),
        resource: renderSlots,
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
  const worker = (id: string) =>
    createClient({
      id,
      product: "render-slot",
      poolSecret,
      bind: udp(0),
      servers: members.map((member) => ({ id: member.id, address: member.client })),
      heartbeatInterval: 50,
    })
  const signal = AbortSignal.timeout(20_000)
  const first = await worker("worker-1")
  await once(first, "Granted", { signal })
  const second = await worker("worker-2")
  await once(second, "Granted", { signal })
  const third = await worker("worker-3")
  let denied: { reason: string } | undefined
  // A Denied may first say the pool is still settling; wait for the capacity answer.
  while (denied?.reason !== "capacity") [denied] = await once(third, "Denied", { signal })
  // A slot given back goes to the worker still asking.
  const granted = once(third, "Granted", { signal })
  await first.release()
  const [regranted] = await granted
  for (const item of [first, second, third, ...servers]) await item.close()
  rmSync(stateDir, { recursive: true })
  return { thirdDenied: denied.reason, thirdGrantedBy: regranted.server as string }
}

if (import.meta.main) {
  main().then((result) => console.log(result))
}
