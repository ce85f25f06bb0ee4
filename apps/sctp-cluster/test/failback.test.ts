/**
 * Failback with real processes under usrsctp's client: the primary is SIGKILLed, the
 * secondary takes over; the old primary, restarted as the new secondary, receives the
 * association's state; then the node that took over is SIGKILLed and the restarted one takes
 * over in turn. Every message is echoed once and in order through both failovers.
 */
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Ports, Usrsctp } from "@understudy/testkit"
import * as App from "./support.ts"

afterEach(App.killAll)

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const echoed = (output: string): Array<number> =>
  [...output.matchAll(/^n (\d+)$/gm)].map((match) => Number(match[1]))

const failureNotice = /SCTP_COMM_LOST|SCTP_SHUTDOWN|SCTP_CANT_STR_ASSOC|ABORT|Connection refused/

const tuned: Usrsctp.ShimOptions["tune"] = {
  rto_min_default: 100,
  rto_max_default: 400,
  rto_initial_default: 200,
  path_rtx_max_default: 2,
  // The address that failed is probed again within a second once it is back.
  heartbeat_interval_default: 1_000,
}

describe("failback under usrsctp's client", () => {
  it("the killed primary rejoins as the secondary; a second failover carries the association", async () => {
    const ports = await App.clusterPorts()
    // Where the old primary listens once it rejoins as the secondary.
    const standbyLink = `tcp://127.0.0.2:${await Ports.freeTcpPort("127.0.0.2")}`
    const secondary = App.start(App.nodeArgs("secondary", ports, ["--standby-link", standbyLink]))
    const primary = App.start(App.nodeArgs("primary", ports))
    await primary.line("started", 20_000)
    await secondary.line("started", 20_000)
    await App.linkUp("the primary's link to the secondary is up", primary)
    const client = await Usrsctp.startClient({
      host: "127.0.0.2",
      port: 7,
      localEncapsPort: ports.clientEncapsPort,
      remoteEncapsPort: ports.udpPort,
      tune: tuned,
    })
    await client.waitFor(/SCTP_COMM_UP/, 15_000)
    await client.waitFor(/Peer address 127\.0\.0\.3 is now SCTP_ADDR_CONFIRMED/, 15_000)
    const send = async (from: number, to: number) => {
      for (let n = from; n <= to; n++) {
        client.write(`n ${n}\n`)
        await sleep(10)
      }
      await App.eventually(
        `echoes up to ${to}`,
        () => (echoed(client.stdout()).length >= to ? true : undefined),
        20_000,
      )
    }
    await send(1, 10)

    primary.kill("SIGKILL")
    await primary.exit()
    await send(11, 20)
    await App.eventually(
      "the secondary took over",
      () => secondary.lines.find((line) => line.t === "cluster" && line._tag === "TookOver"),
      10_000,
    )

    // The old primary comes back as the standby of the node that took over.
    const rejoined = App.start([
      "node",
      "--role",
      "secondary",
      "--addresses",
      "127.0.0.3,127.0.0.2",
      "--policy",
      "every-update",
      "--udp-port",
      String(ports.udpPort),
      "--link",
      standbyLink,
      "--standby-link",
      ports.link,
      "--status",
      "tcp://127.0.0.1:0",
      "--cluster-key-file",
      ports.keyFile,
    ])
    const rejoinedStarted = await rejoined.line("started", 20_000)
    await App.linkUp("the rejoined node's link is up", rejoined)
    await App.eventually(
      "the rejoined node holds the association's copy",
      async () => {
        const status = await App.statusOf(rejoinedStarted.status as string)
        return status?.replicas === 1 && status.role === "secondary" ? true : undefined
      },
      10_000,
    )
    // The client's HEARTBEATs to the old primary's address are answered again (from the
    // copy): it has somewhere to go when the other node dies.
    await App.eventually(
      "the rejoined node answered the client",
      async () => {
        const status = await App.statusOf(rejoinedStarted.status as string)
        return status !== undefined && status.endpoint.packetsOut > 0 ? true : undefined
      },
      30_000,
    )
    await send(21, 30)

    secondary.kill("SIGKILL")
    await secondary.exit()
    await send(31, 40)
    await App.eventually(
      "the rejoined node took over",
      () => rejoined.lines.find((line) => line.t === "cluster" && line._tag === "TookOver"),
      10_000,
    )
    expect(echoed(client.stdout())).toEqual(Array.from({ length: 40 }, (_, i) => i + 1))
    expect(client.output()).not.toMatch(failureNotice)
    expect(client.child.exitCode).toBeNull()
    const status = await App.statusOf(rejoinedStarted.status as string)
    expect(status?.role).toBe("active-secondary")
    expect(status?.associations).toHaveLength(1)
  }, 120_000)
})
