/**
 * Another local process floods both nodes with INITs and with packets carrying guessed
 * verification tags while usrsctp's `client` talks to the cluster: no association or
 * alias is created, and the client's association goes on, every echo once and in order.
 */

import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Eventually, JsonLinesProcess, Usrsctp } from "@understudy/testkit"
import * as App from "./support.ts"

afterEach(App.killAll)

const floodScript = fileURLToPath(new URL("./support/flood.ts", import.meta.url))

const echoed = (output: string): Array<number> =>
  [...output.matchAll(/^n (\d+)$/gm)].map((match) => Number(match[1]))

const flood = async (host: string, udpPort: number) => {
  const attacker = new JsonLinesProcess.JsonLinesProcess(floodScript, [
    host,
    String(udpPort),
    "7",
    "1000",
  ])
  try {
    return await attacker.line("flooded", 60_000)
  } finally {
    if (!attacker.exited) attacker.kill("SIGKILL")
    await attacker.exit()
  }
}

describe("sctp-cluster under a local adversary", () => {
  it("an INIT flood and guessed tags create nothing and disturb no association", async () => {
    const ports = await App.clusterPorts()
    const { primary, primaryStarted, secondaryStarted } = await App.startPair(ports)
    await App.linkUp("the primary's link is up", primary)
    const client = await Usrsctp.startClient({
      host: "127.0.0.2",
      port: 7,
      localEncapsPort: ports.clientEncapsPort,
      remoteEncapsPort: ports.udpPort,
      // On a starved machine the flood may delay the link's keep-alive past its time-out:
      // the secondary then takes over, and the client must move to it. With usrsctp's
      // default timers that takes about a minute (RTO up to 60 s); tuned, about a second.
      // What this test checks is that nothing is lost or created, not how fast.
      tune: {
        rto_min_default: 100,
        rto_max_default: 400,
        rto_initial_default: 200,
        path_rtx_max_default: 2,
      },
    })
    await client.waitFor(/SCTP_COMM_UP/, 15_000)
    // The secondary's address confirmed: somewhere to go should the secondary take over.
    await client.waitFor(/Peer address 127\.0\.0\.3 is now SCTP_ADDR_CONFIRMED/, 15_000)
    const total = 40
    for (let n = 1; n <= total / 2; n++) {
      client.write(`n ${n}\n`)
      await sleep(10)
    }
    const [toPrimary, toSecondary] = await Promise.all([
      flood("127.0.0.2", ports.udpPort),
      flood("127.0.0.3", ports.udpPort),
    ])
    expect(toPrimary.sent).toBe(2_000)
    expect(toSecondary.sent).toBe(2_000)
    for (let n = total / 2 + 1; n <= total; n++) {
      client.write(`n ${n}\n`)
      await sleep(10)
    }
    await Eventually.promise(
      "every echo",
      () => (echoed(client.stdout()).length >= total ? true : undefined),
      { within: 60_000 },
    )
    expect(echoed(client.stdout())).toEqual(Array.from({ length: total }, (_, i) => i + 1))
    expect(client.output()).not.toMatch(/SCTP_COMM_LOST|SCTP_SHUTDOWN|ABORT/)
    // No state was created: one association in the cluster, wherever it lives. (On a
    // starved machine the link's 500 ms keep-alive may time out under the flood and the
    // secondary take the association over: the peer sees nothing of it, as checked above.)
    const statuses = await Promise.all([
      App.statusOf(primaryStarted.status as string),
      App.statusOf(secondaryStarted.status as string),
    ])
    const live = statuses.flatMap((status) => status?.associations ?? [])
    expect(live.map((association) => association.state)).toEqual(["Established"])
    for (const status of statuses) expect(status?.endpoint.associations ?? 0).toBeLessThanOrEqual(1)
  }, 120_000)
})
