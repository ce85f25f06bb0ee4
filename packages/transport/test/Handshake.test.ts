import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { macBytes } from "../src/internal/frame.ts"
import {
  clientProof,
  decodeHello,
  decodeHelloAck,
  encodeHello,
  encodeHelloAck,
  FrameMac,
  HelloStatus,
  macEquals,
  nonceBytes,
  protocolVersion,
  serverProof,
} from "../src/internal/handshake.ts"

const magic = new TextEncoder().encode("UNDERSTUDY")
const bytesOf = (length: number) => fc.uint8Array({ minLength: length, maxLength: length })
const nonce = bytesOf(nonceBytes)
const key = fc.uint8Array({ minLength: 1, maxLength: 64 })

/** Random bytes, and random bytes behind the right magic, where the interesting cases are. */
const body = fc.oneof(
  fc.uint8Array({ maxLength: 100 }),
  fc.uint8Array({ maxLength: 90 }).map((rest) => new Uint8Array([...magic, ...rest])),
  fc
    .tuple(
      fc.integer({ min: 0, max: 3 }),
      fc.integer({ min: 0, max: 5 }),
      fc.uint8Array({ maxLength: 80 }),
    )
    .map(([version, flags, rest]) => new Uint8Array([...magic, version, flags, ...rest])),
)

describe("Hello codec", () => {
  it("decodeHello and decodeHelloAck are total: a value or a reason, never a throw", () => {
    fc.assert(
      fc.property(body, fc.boolean(), (bytes, authenticated) => {
        const hello = decodeHello(bytes)
        if (typeof hello === "string") expect(hello.length).toBeGreaterThan(0)
        else {
          expect(hello.version).toBe(bytes[magic.byteLength])
          if (hello.version === protocolVersion) {
            expect(hello.nonce.byteLength).toBe(hello.authenticated ? nonceBytes : 0)
          }
        }
        const ack = decodeHelloAck(bytes, authenticated)
        if (typeof ack === "string") expect(ack.length).toBeGreaterThan(0)
        else if (ack.status === HelloStatus.Ok && ack.version === protocolVersion) {
          expect(ack.nonce.byteLength).toBe(authenticated ? nonceBytes : 0)
          expect(ack.mac.byteLength).toBe(authenticated ? macBytes : 0)
        }
      }),
      { numRuns: 500 },
    )
  })

  it("refuses bytes without the magic, and unknown flags", () => {
    expect(decodeHello(new TextEncoder().encode("GET / HTTP/1.1\r\n"))).toBe(
      "not an Understudy hello",
    )
    expect(decodeHello(magic)).toBe("not an Understudy hello")
    expect(decodeHello(new Uint8Array([...magic, protocolVersion, 2]))).toBe(
      "unknown hello flags 2",
    )
    expect(decodeHello(new Uint8Array([...magic, protocolVersion, 1, 1, 2]))).toBe(
      "hello nonce of 2 bytes",
    )
    expect(decodeHelloAck(new TextEncoder().encode("HTTP/1.1 400"), false)).toBe(
      "not an Understudy reply",
    )
    expect(decodeHelloAck(new Uint8Array([...magic, protocolVersion, 0, 1]), false)).toBe(
      "reply of 1 bytes after the header",
    )
  })

  it("Hello round trips, for this version and (any nonce) for others", () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        nonce,
        fc.integer({ min: 0, max: 255 }),
        fc.uint8Array({ maxLength: 40 }),
        (authenticated, n, otherVersion, otherNonce) => {
          const mine = {
            version: protocolVersion,
            authenticated,
            nonce: authenticated ? n : new Uint8Array(0),
          }
          expect(decodeHello(encodeHello(mine))).toEqual(mine)
          const other = { version: otherVersion, authenticated, nonce: otherNonce }
          if (otherVersion !== protocolVersion)
            expect(decodeHello(encodeHello(other))).toEqual(other)
        },
      ),
      { numRuns: 300 },
    )
  })

  it("HelloAck round trips when Ok; other statuses keep version and status only", () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        nonce,
        bytesOf(macBytes),
        fc.integer({ min: 1, max: 255 }),
        fc.integer({ min: 0, max: 255 }),
        (authenticated, n, mac, status, version) => {
          const empty = new Uint8Array(0)
          const ok = {
            version: protocolVersion,
            status: HelloStatus.Ok,
            nonce: authenticated ? n : empty,
            mac: authenticated ? mac : empty,
          }
          expect(decodeHelloAck(encodeHelloAck(ok), authenticated)).toEqual(ok)
          const refused = { version, status, nonce: n, mac }
          expect(decodeHelloAck(encodeHelloAck(refused), authenticated)).toEqual({
            version,
            status,
            nonce: empty,
            mac: empty,
          })
        },
      ),
      { numRuns: 300 },
    )
  })

  it("an Ok reply whose length does not fit the mode is refused", () => {
    const n = new Uint8Array(nonceBytes).fill(1)
    const mac = new Uint8Array(macBytes).fill(2)
    const authenticatedAck = encodeHelloAck({ version: protocolVersion, status: 0, nonce: n, mac })
    expect(typeof decodeHelloAck(authenticatedAck, false)).toBe("string")
    const plainAck = encodeHelloAck({
      version: protocolVersion,
      status: 0,
      nonce: new Uint8Array(0),
      mac: new Uint8Array(0),
    })
    expect(typeof decodeHelloAck(plainAck, true)).toBe("string")
  })
})

describe("key proofs", () => {
  it("server and client proofs depend on the key, both nonces and the direction", () => {
    fc.assert(
      fc.property(key, key, nonce, nonce, (k1, k2, nc, ns) => {
        fc.pre(!macEquals(k1, k2) && !macEquals(nc, ns))
        expect(macEquals(serverProof(k1, nc, ns), serverProof(k1, nc, ns))).toBe(true)
        expect(macEquals(serverProof(k1, nc, ns), serverProof(k2, nc, ns))).toBe(false)
        expect(macEquals(serverProof(k1, nc, ns), serverProof(k1, ns, nc))).toBe(false)
        // A server proof can not be reflected back as the client's.
        expect(macEquals(serverProof(k1, nc, ns), clientProof(k1, nc, ns))).toBe(false)
        expect(macEquals(clientProof(k1, nc, ns), clientProof(k1, ns, nc))).toBe(false)
      }),
      { numRuns: 200 },
    )
  })

  it("macEquals is false for different lengths instead of throwing", () => {
    expect(macEquals(new Uint8Array(32), new Uint8Array(31))).toBe(false)
    expect(macEquals(new Uint8Array(0), new Uint8Array(0))).toBe(true)
  })
})

interface Signed {
  readonly type: number
  readonly body: Uint8Array
}

/** Signs frames in order with `mac`, as a sender does. */
const sign = (
  mac: FrameMac,
  frames: ReadonlyArray<{ type: number; payload: Uint8Array }>,
): Array<Signed> =>
  frames.map(({ type, payload }) => {
    const body = new Uint8Array(payload.byteLength + macBytes)
    body.set(payload)
    mac.sign(type, payload, body.subarray(payload.byteLength))
    return { type, body }
  })

const frameArb = fc.record({
  type: fc.integer({ min: 0, max: 255 }),
  payload: fc.uint8Array({ maxLength: 64 }),
})

describe("FrameMac", () => {
  it("frames signed by one side verify on the other, in sequence, each way", () => {
    fc.assert(
      fc.property(
        key,
        nonce,
        nonce,
        fc.array(frameArb, { minLength: 1, maxLength: 10 }),
        (k, nc, ns, frames) => {
          const client = FrameMac.pair(k, nc, ns)
          const server = FrameMac.pair(k, nc, ns)
          for (const signed of sign(client.clientToServer, frames)) {
            expect(server.clientToServer.verify(signed.type, signed.body)).toBeDefined()
          }
          const back = sign(server.serverToClient, frames)
          back.forEach((signed, i) => {
            expect(Array.from(client.serverToClient.verify(signed.type, signed.body)!)).toEqual(
              Array.from(frames[i]!.payload),
            )
          })
        },
      ),
      { numRuns: 200 },
    )
  })

  it("a replayed frame fails", () => {
    fc.assert(
      fc.property(
        key,
        nonce,
        nonce,
        fc.array(frameArb, { minLength: 1, maxLength: 6 }),
        fc.nat(),
        (k, nc, ns, frames, pick) => {
          const sender = FrameMac.pair(k, nc, ns).clientToServer
          const receiver = FrameMac.pair(k, nc, ns).clientToServer
          const signed = sign(sender, frames)
          for (const frame of signed) expect(receiver.verify(frame.type, frame.body)).toBeDefined()
          const again = signed[pick % signed.length]!
          expect(receiver.verify(again.type, again.body)).toBeUndefined()
        },
      ),
      { numRuns: 200 },
    )
  })

  it("two frames swapped fail", () => {
    fc.assert(
      fc.property(key, nonce, nonce, frameArb, frameArb, (k, nc, ns, a, b) => {
        const [, second] = sign(FrameMac.pair(k, nc, ns).clientToServer, [a, b])
        const receiver = FrameMac.pair(k, nc, ns).clientToServer
        expect(receiver.verify(second!.type, second!.body)).toBeUndefined()
      }),
      { numRuns: 200 },
    )
    // And the first frame after the swap fails too: its sequence number was consumed.
    const k = new Uint8Array([1])
    const n = new Uint8Array(nonceBytes)
    const [first, second] = sign(FrameMac.pair(k, n, n).clientToServer, [
      { type: 16, payload: new Uint8Array([1]) },
      { type: 16, payload: new Uint8Array([2]) },
    ])
    const receiver = FrameMac.pair(k, n, n).clientToServer
    expect(receiver.verify(second!.type, second!.body)).toBeUndefined()
    expect(receiver.verify(first!.type, first!.body)).toBeUndefined()
  })

  it("any flipped bit of payload or MAC, or another type, fails", () => {
    fc.assert(
      fc.property(
        key,
        nonce,
        nonce,
        frameArb,
        fc.nat(),
        fc.integer({ min: 0, max: 7 }),
        (k, nc, ns, frame, at, bit) => {
          const [signed] = sign(FrameMac.pair(k, nc, ns).clientToServer, [frame])
          const body = signed!.body.slice()
          body[at % body.byteLength]! ^= 1 << bit
          expect(FrameMac.pair(k, nc, ns).clientToServer.verify(signed!.type, body)).toBeUndefined()
          const otherType = (signed!.type + 1 + (at % 255)) % 256
          expect(
            FrameMac.pair(k, nc, ns).clientToServer.verify(otherType, signed!.body),
          ).toBeUndefined()
        },
      ),
      { numRuns: 300 },
    )
  })

  it("a MAC from another connection (other nonces), another key or the other direction fails", () => {
    fc.assert(
      fc.property(
        key,
        key,
        nonce,
        nonce,
        nonce,
        frameArb,
        (k, otherKey, nc, ns, otherNonce, frame) => {
          fc.pre(!macEquals(ns, otherNonce) && !macEquals(k, otherKey))
          const [signed] = sign(FrameMac.pair(k, nc, otherNonce).clientToServer, [frame])
          expect(
            FrameMac.pair(k, nc, ns).clientToServer.verify(signed!.type, signed!.body),
          ).toBeUndefined()
          const [otherKeyed] = sign(FrameMac.pair(otherKey, nc, ns).clientToServer, [frame])
          expect(
            FrameMac.pair(k, nc, ns).clientToServer.verify(otherKeyed!.type, otherKeyed!.body),
          ).toBeUndefined()
          // A frame the server sent, reflected back to it, does not pass as the client's.
          const [reflected] = sign(FrameMac.pair(k, nc, ns).serverToClient, [frame])
          expect(
            FrameMac.pair(k, nc, ns).clientToServer.verify(reflected!.type, reflected!.body),
          ).toBeUndefined()
        },
      ),
      { numRuns: 200 },
    )
  })

  it("a body shorter than a MAC fails without throwing", () => {
    const mac = FrameMac.pair(
      new Uint8Array([1]),
      new Uint8Array(nonceBytes),
      new Uint8Array(nonceBytes),
    )
    expect(mac.clientToServer.verify(16, new Uint8Array(macBytes - 1))).toBeUndefined()
    expect(mac.clientToServer.verify(16, new Uint8Array(0))).toBeUndefined()
  })
})
