/**
 * `sctp-cluster handover` judged by usrsctp: its example `client`, with its default timers,
 * streams lines to the echo service at the primary's address; mid-stream the primary is asked
 * to hand over. The client must report the secondary's address made primary, echo every line
 * once and in order, and — from a capture of the loopback interface — neither side may send
 * a DATA chunk twice (no retransmission at all). The request is signed with the cluster key:
 * an unsigned one is refused and changes nothing.
 */
import * as http from "node:http"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Eventually } from "@understudy/testkit"
import { Address } from "@understudy/transport"
import { Effect, Redacted } from "effect"
import { TestClock } from "effect/testing"
import { authHeader, requestHandOver, sign, verifier } from "../src/handover.ts"
import { serveStatus } from "../src/node.ts"
import * as Capture from "./support/capture.ts"
import * as App from "./support.ts"

afterEach(() => App.killAll())

const failureNotice = /SCTP_COMM_LOST|SCTP_SHUTDOWN|SCTP_CANT_STR_ASSOC|ABORT|Connection refused/

/** The TSNs of the DATA chunks sent from `srcPort`, in order (one twice: sent twice). */
const dataTsns = (datagrams: ReadonlyArray<Capture.Datagram>, srcPort: number) =>
  datagrams
    .filter((datagram) => datagram.srcPort === srcPort)
    .flatMap((datagram) =>
      datagram.chunks.filter((chunk) => chunk.type === Capture.chunkType.data).map((c) => c.value!),
    )

/** `POST /handover` with `header` as its signature: the status code and body. */
const post = (address: Address.StreamAddress, header: string) =>
  new Promise<{ readonly status: number | undefined; readonly body: string }>((resolve, reject) => {
    if (address._tag !== "Tcp") return reject(new Error("a TCP status address"))
    const request = http.request(
      {
        host: address.host,
        port: address.port,
        method: "POST",
        path: "/handover",
        headers: { [authHeader]: header, connection: "close", "content-length": "0" },
      },
      (response) => {
        const chunks: Array<Buffer> = []
        response.on("data", (chunk: Buffer) => chunks.push(chunk))
        response.on("end", () =>
          resolve({ status: response.statusCode, body: Buffer.concat(chunks).toString() }),
        )
      },
    )
    request.on("error", reject)
    request.end()
  })

const repeated = (tsns: ReadonlyArray<number>) =>
  tsns.filter((tsn, index) => tsns.indexOf(tsn) !== index)

describe("the handover request's signature", () => {
  const key = new Uint8Array(32).fill(9)
  it("a request signed with the cluster key is taken once, within 30 s", () => {
    const verify = verifier(key)
    const header = sign(key, 1_000_000)
    expect(verify(header, 1_010_000)).toBeUndefined()
    expect(verify(header, 1_010_001)).toContain("replay")
    expect(verify(sign(key, 1_000_000), 1_040_000)).toContain("within 30 s")
    expect(verify(sign(new Uint8Array(32).fill(8), 1_000_000), 1_000_000)).toContain("not signed")
    expect(verify(undefined, 1_000_000)).toContain("no valid")
    expect(verify("1000000.zz.zz", 1_000_000)).toContain("no valid")
  })

  // Both ends read the Effect's clock: a TestClock at 1,000,000 ms (1970) drives the window.
  it.effect("the request is signed and checked at the Effect's clock", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(1_000_000)
      const report = { confirmed: true, forwarded: 0, durationMs: 1 }
      const address = yield* serveStatus(Address.tcp("127.0.0.1", 0), Effect.die("no status"), {
        run: Effect.succeed(report),
        verify: verifier(key),
        done: () => {},
      })
      expect(yield* requestHandOver(address, Redacted.make(key))).toEqual(report)
      // Signed at the wall clock's time: 56 years from the node's.
      const refused = yield* Effect.promise(() => post(address, sign(key, Date.now())))
      expect(refused.status).toBe(401)
      expect(refused.body).toContain("within 30 s")
      const late = yield* Effect.promise(() => post(address, sign(key, 1_031_000)))
      expect(late.status).toBe(401)
      yield* TestClock.adjust(2_000)
      expect((yield* Effect.promise(() => post(address, sign(key, 1_031_000)))).status).toBe(200)
    }),
  )
})

// A capture needs root (AF_PACKET): the check of "no DATA sent twice" is the point here.
const captureUnavailable = Capture.unavailableReason()

describe("sctp-cluster handover under usrsctp's client (default timers)", () => {
  it("the client moves to the secondary, every line echoed once and in order, no DATA sent twice by either side; the old primary exits", async () => {
    if (captureUnavailable !== undefined) throw new Error(`run as root: ${captureUnavailable}`)
    const ports = await App.clusterPorts()
    const { primary, primaryStarted, secondaryStarted } = await App.startPair(ports)
    await App.linkUp("the primary's link to the secondary is up", primary)
    const capture = await Capture.start([ports.udpPort, ports.clientEncapsPort])
    const { client } = await App.connectClient(ports, undefined)
    const primaryStatus = primaryStarted.status as string

    // Unsigned: refused, the primary still serves.
    const unsigned = await App.run(["handover", "--status", primaryStatus, "--insecure"])
    expect(unsigned.code).toBe(1)
    expect(unsigned.stderr).toContain("401")
    expect((await App.statusOf(primaryStatus))?.role).toBe("primary")

    // 50 lines a second, as a user's stream; the handover mid-stream.
    const total = 150
    const stream = await App.streamLines(client, total, 40)
    try {
      const handover = await App.run([
        "handover",
        "--status",
        primaryStatus,
        "--cluster-key-file",
        ports.keyFile,
      ])
      expect(handover.code, handover.stderr).toBe(0)
      const report = JSON.parse(handover.stdout.trim()) as Record<string, unknown>
      expect(report).toMatchObject({ t: "handed-over", confirmed: true })
      await client.waitFor(/Peer address 127\.0\.0\.3 is now SCTP_ADDR_MADE_PRIM/, 10_000)
      // The old primary exits by itself once handed over.
      await primary.exit()
      expect(primary.child.exitCode).toBe(0)
      expect(
        primary.lines.some((line) => line.t === "stopping" && line.reason === "HandedOver"),
      ).toBe(true)
      await Eventually.promise(
        "every echo",
        () => (App.echoed(client.stdout()).length >= total ? true : undefined),
        { within: 30_000 },
      )
      expect(App.echoed(client.stdout())).toEqual(Array.from({ length: total }, (_, i) => i + 1))
    } finally {
      stream.stop()
    }
    await capture.mark("end")
    const datagrams = capture.datagrams()
    const fromClient = dataTsns(datagrams, ports.clientEncapsPort)
    const fromCluster = dataTsns(datagrams, ports.udpPort)
    expect(fromClient.length).toBeGreaterThanOrEqual(total)
    expect(fromCluster.length).toBeGreaterThanOrEqual(total)
    expect(repeated(fromClient)).toEqual([])
    expect(repeated(fromCluster)).toEqual([])
    expect(client.output()).not.toMatch(failureNotice)
    const status = await App.statusOf(secondaryStarted.status as string)
    expect(status?.role).toBe("active-secondary")
    expect(status?.associations[0]?.state).toBe("Established")
  }, 90_000)
})
