/**
 * ASCONF (RFC 5061) between two of our associations over the loopback harness: the takeover's
 * authenticated Set Primary Address, and the answers to a peer's requests — including the
 * ones that must change nothing (no valid AUTH, a wrong serial number, an address not in the
 * association).
 */
import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import * as fc from "fast-check"
import * as Asconf from "../src/Asconf.ts"
import * as Association from "../src/Association.ts"
import * as Auth from "../src/Auth.ts"
import * as Chunk from "../src/Chunk.ts"
import * as Packet from "../src/Packet.ts"
import * as Replication from "../src/Replication.ts"
import { asconfParameter, parameter } from "./arbitraries.ts"
import { clientHost, established, Loopback, serverHosts, serverUdp } from "./associationHarness.ts"

const config = (localPort: number, localAddresses: ReadonlyArray<string> = []) => ({
  ...Association.defaultConfig,
  localPort,
  localAddresses,
})

const setUp = (seed: number) => {
  const lb = new Loopback({ seed }, config(4000), config(5000, serverHosts))
  expect(lb.run(() => established(lb), 60_000)).toBe(true)
  // Both addresses of the server confirmed by the client's heartbeats.
  expect(lb.run(() => lb.client.paths.every((path) => path.confirmed), 120_000)).toBe(true)
  return lb
}

const v4 = (text: string): Chunk.Parameter => ({
  _tag: "Ipv4Address",
  address: Uint8Array.from(text.split(".").map(Number)),
})

const fromServer: Association.PeerAddress = { host: serverHosts[0], udpPort: serverUdp }

/** Steps `st` with a packet of `chunks` as the wire would carry it (encoded, decoded). */
const receive = (
  lb: Loopback,
  st: Association.State,
  chunks: ReadonlyArray<Chunk.Chunk>,
  from = fromServer,
): ReadonlyArray<Association.Output> => {
  const bytes = Packet.encode({
    sourcePort: st.peerPort,
    destinationPort: st.localPort,
    verificationTag: st.myTag,
    chunks,
  })
  const decoded = Packet.decode(bytes)
  if (!Result.isSuccess(decoded)) throw new Error("undecodable")
  return Association.step(st, { _tag: "Receive", from, message: decoded.success, nowMs: lb.nowMs })
    .outputs
}

const sent = (outputs: ReadonlyArray<Association.Output>) =>
  outputs.flatMap((o) => (o._tag === "Send" ? o.message.chunks : []))

const acks = (outputs: ReadonlyArray<Association.Output>) =>
  sent(outputs).filter((c): c is Chunk.AsconfAck => c._tag === "AsconfAck")

const dropped = (outputs: ReadonlyArray<Association.Output>) =>
  outputs.flatMap((o) => (o._tag === "Emit" && o.event._tag === "Dropped" ? [o.event.reason] : []))

/** An ASCONF from the server's side, signed with the association key. */
const signed = (lb: Loopback, asconf: Chunk.Asconf): Array<Chunk.Chunk> => [
  Auth.sign(lb.server!.auth!, [asconf]),
  asconf,
]

const request = (
  serialNumber: number,
  parameters: ReadonlyArray<Chunk.AsconfParameter>,
): Chunk.Asconf => ({ _tag: "Asconf", serialNumber, address: v4(serverHosts[0]), parameters })

/** The serial number the client expects next. */
const nextSerial = (lb: Loopback) => lb.server!.myInitialTsn >>> 0

describe("AUTH and ASCONF negotiated between two endpoints", () => {
  it("both ends derive the same association key and start the serial numbers at the initial TSNs", () => {
    const lb = setUp(1)
    expect(lb.client.auth).toBeDefined()
    expect(lb.client.auth!.key).toEqual(lb.server!.auth!.key)
    expect(lb.client.auth!.asconf).toBe(true)
    expect(lb.client.asconf!.nextSerial).toBe(lb.client.myInitialTsn)
    expect(lb.client.asconf!.peerSerial).toBe((lb.server!.myInitialTsn - 1) >>> 0)
    expect(lb.server!.asconf!.peerSerial).toBe((lb.client.myInitialTsn - 1) >>> 0)
    // Off on one side: no AUTH, no ASCONF.
    const plain = new Loopback(
      { seed: 2 },
      { ...config(4000), auth: false },
      config(5000, serverHosts),
    )
    expect(plain.run(() => established(plain), 60_000)).toBe(true)
    expect(plain.client.auth).toBeUndefined()
    expect(plain.server!.auth).toBeUndefined()
    expect(plain.server!.asconf).toBeUndefined()
  })
})

describe("takeover: authenticated ASCONF Set Primary Address (RFC 5061 §4.1.1)", () => {
  it("the replica asks for its address as primary; the peer's new data goes there", () => {
    const lb = setUp(3)
    expect(Association.info(lb.client).primary).toBe(serverHosts[0])
    const replica = Association.restore(
      lb.serverConfig,
      structuredClone(Association.snapshot(lb.server!)),
    )
    lb.server = replica
    lb.serverTimers.clear()
    const serial = replica.asconf!.nextSerial
    const outputs = Association.takeOver(replica, lb.nowMs, { setPrimary: serverHosts[1] })
    const chunks = sent(outputs)
    const at = chunks.findIndex((c) => c._tag === "Asconf")
    expect(at).toBeGreaterThan(0)
    expect(chunks[at - 1]!._tag).toBe("Auth")
    expect(chunks[at]).toMatchObject({ serialNumber: serial })
    expect(outputs).toContainEqual(expect.objectContaining({ timer: "T4-asconf" }))
    lb.perform(false, outputs)
    expect(lb.run(() => replica.asconf!.pending === undefined, 30_000)).toBe(true)
    expect(Association.info(lb.client).primary).toBe(serverHosts[1])
    expect(lb.clientEvents).toContainEqual({
      _tag: "PathChange",
      host: serverHosts[1],
      state: "Primary",
    })
    expect(replica.asconf!.nextSerial).toBe((serial + 1) >>> 0)
    expect(lb.serverTimers.dueOf("T4-asconf")).toBeUndefined()
  })

  it("T4 retransmits the same ASCONF (same serial) until the ASCONF-ACK comes", () => {
    const lb = setUp(4)
    lb.blackHoles.add(clientHost)
    const outputs = Association.takeOver(lb.server!, lb.nowMs, { setPrimary: serverHosts[1] })
    lb.perform(false, outputs)
    const first = sent(outputs).find((c) => c._tag === "Asconf")
    const at = lb.nowMs
    lb.run(() => lb.nowMs >= at + 3_500, 10_000)
    expect(lb.server!.asconf!.pending).toEqual(first)
    lb.blackHoles.delete(clientHost)
    expect(lb.run(() => lb.server!.asconf!.pending === undefined, 30_000)).toBe(true)
    expect(Association.info(lb.client).primary).toBe(serverHosts[1])
    expect(lb.client.asconf!.peerSerial).toBe((first as Chunk.Asconf).serialNumber)
  })
})

describe("an ASCONF in flight when the node dies (a second takeover)", () => {
  it("the replica retransmits it as it is, then asks for its own address after the ASCONF-ACK", () => {
    const lb = setUp(10)
    lb.blackHoles.add(clientHost)
    // The first node asks for 10.0.0.3 and dies before the ASCONF-ACK.
    lb.perform(false, Association.takeOver(lb.server!, lb.nowMs, { setPrimary: serverHosts[1] }))
    const first = lb.server!.asconf!.pending!
    const snapshot = structuredClone(Association.snapshot(lb.server!))
    expect(Replication.snapshotProblem(snapshot)).toBeUndefined()
    expect(
      Replication.snapshotProblem({
        ...snapshot,
        asconf: { ...snapshot.asconf, pending: { _tag: "Asconf" } },
      }),
    ).toBe("asconf")
    expect(Replication.snapshotProblem({ ...snapshot, auth: { key: 1 } })).toBe("auth")
    const replica = Association.restore(lb.serverConfig, snapshot)
    lb.server = replica
    lb.serverTimers.clear()
    lb.blackHoles.delete(clientHost)
    const outputs = Association.takeOver(replica, lb.nowMs, { setPrimary: serverHosts[0] })
    // One ASCONF at a time: the one in flight, same serial, nothing new yet.
    expect(sent(outputs).filter((c) => c._tag === "Asconf")).toEqual([])
    expect(replica.asconf!.pending).toEqual(first)
    lb.perform(false, outputs)
    expect(
      lb.run(
        () =>
          replica.asconf!.pending === undefined &&
          Association.info(lb.client).primary === serverHosts[0],
        60_000,
      ),
    ).toBe(true)
    expect(replica.asconf!.nextSerial).toBe((first.serialNumber + 2) >>> 0)
    expect(lb.client.asconf!.peerSerial).toBe((first.serialNumber + 1) >>> 0)
  })
})

describe("a peer's ASCONF (RFC 5061 §5.2)", () => {
  it("Set Primary, Add IP and Delete IP, answered in one ASCONF-ACK", () => {
    const lb = setUp(5)
    const serial = nextSerial(lb)
    const outputs = receive(
      lb,
      lb.client,
      signed(
        lb,
        request(serial, [
          { _tag: "AddIpAddress", correlationId: 1, address: v4("10.0.0.4") },
          { _tag: "SetPrimaryAddress", correlationId: 2, address: v4(serverHosts[1]) },
          { _tag: "DeleteIpAddress", correlationId: 3, address: v4("10.0.0.4") },
        ]),
      ),
    )
    const [ack] = acks(outputs)
    // Every request succeeded: an empty ASCONF-ACK, authenticated (the peer asked for it).
    expect(ack).toEqual({ _tag: "AsconfAck", serialNumber: serial, parameters: [] })
    expect(sent(outputs).findIndex((c) => c._tag === "Auth")).toBeLessThan(
      sent(outputs).findIndex((c) => c._tag === "AsconfAck"),
    )
    expect(Association.info(lb.client).primary).toBe(serverHosts[1])
    expect(lb.client.paths.map((p) => p.host)).toEqual([...serverHosts])
    expect(lb.client.asconf!.peerSerial).toBe(serial)
    // A retransmission of the same ASCONF gets the same answer and changes nothing.
    const before = Association.snapshot(lb.client)
    const again = receive(
      lb,
      lb.client,
      signed(
        lb,
        request(serial, [
          { _tag: "DeleteIpAddress", correlationId: 9, address: v4(serverHosts[1]) },
        ]),
      ),
    )
    expect(acks(again)).toEqual([ack])
    expect(Association.snapshot(lb.client).paths).toEqual(before.paths)
  })

  it("Set Primary moves the DATA in flight to the new primary at once, not after T3", () => {
    const lb = setUp(11)
    lb.blackHoles.add(serverHosts[0])
    for (let n = 0; n < 3; n++) {
      lb.send(true, { _tag: "Send", stream: 0, ppid: 1, data: Uint8Array.of(n), unordered: false })
    }
    expect(lb.client.flightBytes).toBe(3)
    const outputs = receive(
      lb,
      lb.client,
      signed(
        lb,
        request(nextSerial(lb), [
          { _tag: "SetPrimaryAddress", correlationId: 1, address: v4(serverHosts[1]) },
        ]),
      ),
    )
    const resent = outputs.flatMap((o) =>
      o._tag === "Send"
        ? o.message.chunks.filter((c) => c._tag === "Data").map(() => o.to.host)
        : [],
    )
    expect(resent).toEqual([serverHosts[1], serverHosts[1], serverHosts[1]])
    expect(outputs).toContainEqual({ _tag: "CancelTimer", timer: `T3-rtx:${serverHosts[0]}` })
  })

  it("refusals: an address not in the association, the source address, the last address", () => {
    const lb = setUp(6)
    const serial = nextSerial(lb)
    const setUnknown = {
      _tag: "SetPrimaryAddress" as const,
      correlationId: 1,
      address: v4("10.9.9.9"),
    }
    const deleteSource = {
      _tag: "DeleteIpAddress" as const,
      correlationId: 2,
      address: v4(serverHosts[0]),
    }
    const deleteUnknown = {
      _tag: "DeleteIpAddress" as const,
      correlationId: 3,
      address: v4("10.9.9.8"),
    }
    const [ack] = acks(
      receive(
        lb,
        lb.client,
        signed(lb, request(serial, [setUnknown, deleteSource, deleteUnknown])),
      ),
    )
    expect(ack!.parameters).toEqual([
      Asconf.refusal(setUnknown, 5, Chunk.encodeAsconfParameter(setUnknown)),
      Asconf.refusal(
        deleteSource,
        Asconf.CauseCode.DeleteSourceAddress,
        Chunk.encodeAsconfParameter(deleteSource),
      ),
      // After a refusal every success is reported (the unknown address: nothing to delete).
      { _tag: "SuccessIndication", correlationId: 3 },
    ])
    expect(Association.info(lb.client).primary).toBe(serverHosts[0])
    expect(lb.client.paths).toHaveLength(2)
    // Delete the other address, then the last one is refused.
    const deleteOther = {
      _tag: "DeleteIpAddress" as const,
      correlationId: 4,
      address: v4(serverHosts[1]),
    }
    receive(lb, lb.client, signed(lb, request(serial + 1, [deleteOther])))
    expect(lb.client.paths.map((p) => p.host)).toEqual([serverHosts[0]])
    const deleteLast = { ...deleteOther, correlationId: 5, address: v4(serverHosts[0]) }
    const [last] = acks(
      receive(lb, lb.client, signed(lb, request(serial + 2, [deleteLast])), {
        host: serverHosts[1],
        udpPort: serverUdp,
      }),
    )
    expect(last!.parameters).toEqual([
      Asconf.refusal(
        deleteLast,
        Asconf.CauseCode.DeleteLastRemainingAddress,
        Chunk.encodeAsconfParameter(deleteLast),
      ),
    ])
  })

  it("no valid AUTH, a wrong serial number: silently discarded, nothing changes", () => {
    const lb = setUp(7)
    const serial = nextSerial(lb)
    const asconf = request(serial, [
      { _tag: "SetPrimaryAddress", correlationId: 1, address: v4(serverHosts[1]) },
    ])
    const before = Association.snapshot(lb.client)
    const unchanged = () => {
      const after = Association.snapshot(lb.client)
      expect(after.primary).toBe(before.primary)
      expect(after.paths.map((p) => p.host)).toEqual(before.paths.map((p) => p.host))
      expect(after.asconf).toEqual(before.asconf)
    }
    const noAuth = receive(lb, lb.client, [asconf])
    expect(acks(noAuth)).toEqual([])
    expect(dropped(noAuth)).toContain("AuthMissing")
    unchanged()
    const [auth] = signed(lb, asconf) as [Chunk.Auth]
    const bad = receive(lb, lb.client, [{ ...auth, hmac: auth.hmac.map((b) => b ^ 0x80) }, asconf])
    expect(acks(bad)).toEqual([])
    expect(dropped(bad)).toContain("AuthBadHmac")
    unchanged()
    const otherKey = receive(lb, lb.client, [{ ...auth, sharedKeyId: 1 }, asconf])
    expect(dropped(otherKey)).toContain("AuthUnknownKey")
    unchanged()
    // An HMAC identifier we never offered: discarded, and reported in an ERROR (§4.1).
    const unsupported = receive(lb, lb.client, [{ ...auth, hmacId: 2 }, asconf])
    expect(sent(unsupported)).toContainEqual({
      _tag: "OperationError",
      causes: [Auth.unsupportedHmacCause(2)],
    })
    unchanged()
    for (const wrong of [serial + 1, serial - 2, serial + 1000]) {
      const outputs = receive(lb, lb.client, signed(lb, { ...asconf, serialNumber: wrong >>> 0 }))
      expect(acks(outputs)).toEqual([])
      expect(dropped(outputs)).toContain("AsconfStaleSerial")
      unchanged()
    }
  })

  it("an ASCONF-ACK for a serial number never sent aborts (Illegal ASCONF-ACK)", () => {
    const lb = setUp(8)
    const ack: Chunk.AsconfAck = {
      _tag: "AsconfAck",
      serialNumber: (lb.client.asconf!.nextSerial + 5) >>> 0,
      parameters: [],
    }
    const outputs = receive(lb, lb.client, [Auth.sign(lb.server!.auth!, [ack]), ack])
    expect(sent(outputs)).toContainEqual({
      _tag: "Abort",
      reflected: false,
      causes: [{ _tag: "UnknownCause", code: 0xa3, value: new Uint8Array(0) }],
    })
    expect(lb.client.name).toBe("Closed")
  })

  it("fuzz: any authenticated requests are answered or refused, never more paths than allowed", () => {
    const lb = setUp(9)
    const base = Association.snapshot(lb.client)
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            asconfParameter,
            fc.record({
              _tag: fc.constantFrom(
                "AddIpAddress" as const,
                "DeleteIpAddress" as const,
                "SetPrimaryAddress" as const,
              ),
              correlationId: fc.integer({ min: 0, max: 0xffffffff }),
              address: fc.oneof(
                parameter,
                fc.constantFrom(...[...serverHosts, "10.0.0.9", "0.0.0.0"].map(v4)),
              ),
            }),
          ),
          { maxLength: 8 },
        ),
        fc.boolean(),
        (parameters, authenticated) => {
          const st = Association.restore(lb.clientConfig, structuredClone(base))
          const asconf = request(nextSerial(lb), parameters)
          const outputs = receive(lb, st, authenticated ? signed(lb, asconf) : [asconf])
          if (!authenticated) {
            expect(acks(outputs)).toEqual([])
            expect(Association.snapshot(st)).toEqual(base)
            return
          }
          expect(acks(outputs)).toHaveLength(1)
          expect(st.paths.length).toBeGreaterThanOrEqual(1)
          expect(st.paths.length).toBeLessThanOrEqual(16)
          expect(st.primary).toBeLessThan(st.paths.length)
          expect(st.asconf!.peerSerial).toBe(asconf.serialNumber)
        },
      ),
      { numRuns: 300 },
    )
  })
})
