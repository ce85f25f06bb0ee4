/**
 * The opening exchange of every connection, and the optional cluster-key authentication.
 *
 * Without a key:   client Hello → server HelloAck(status).
 * With a key:      client Hello(nonceC) → server HelloAck(status, nonceS, MAC_server)
 *                  → client Proof(MAC_client), then at once its first frames.
 * MAC_server = HMAC(key, "understudy/server" | nonceC | nonceS) and
 * MAC_client = HMAC(key, "understudy/client" | nonceS | nonceC): each side proves the key
 * over a nonce the other side just chose, so a recorded handshake can not be replayed.
 * Each direction then has its own session key, HMAC(key, direction | nonceC | nonceS), and
 * every frame carries HMAC(sessionKey, sequence number | type | payload): a frame replayed,
 * reordered or taken from another connection fails its MAC.
 */
import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from "node:crypto"
import { macBytes } from "./frame.ts"

export const protocolVersion = 1
export const nonceBytes = 32
const magic = new TextEncoder().encode("UNDERSTUDY")

/** What the server answers to a Hello. */
export const HelloStatus = {
  Ok: 0,
  VersionMismatch: 1,
  /** The server requires a cluster key and the client offered none. */
  AuthenticationRequired: 2,
  /** The client offered authentication and the server has no key. */
  AuthenticationUnsupported: 3,
} as const

export interface Hello {
  readonly version: number
  readonly authenticated: boolean
  readonly nonce: Uint8Array
}

export interface HelloAck {
  readonly version: number
  readonly status: number
  readonly nonce: Uint8Array
  readonly mac: Uint8Array
}

const hasMagic = (body: Uint8Array): boolean =>
  body.byteLength >= magic.byteLength && magic.every((byte, i) => body[i] === byte)

export const encodeHello = (hello: Hello): Uint8Array => {
  const out = new Uint8Array(magic.byteLength + 2 + hello.nonce.byteLength)
  out.set(magic, 0)
  out[magic.byteLength] = hello.version
  out[magic.byteLength + 1] = hello.authenticated ? 1 : 0
  out.set(hello.nonce, magic.byteLength + 2)
  return out
}

/** A Hello, or why the bytes are not one. */
export const decodeHello = (body: Uint8Array): Hello | string => {
  if (!hasMagic(body) || body.byteLength < magic.byteLength + 2) return "not an Understudy hello"
  const version = body[magic.byteLength]!
  const flags = body[magic.byteLength + 1]!
  if (flags > 1) return `unknown hello flags ${flags}`
  const nonce = body.subarray(magic.byteLength + 2)
  if (version === protocolVersion) {
    const expected = flags === 1 ? nonceBytes : 0
    if (nonce.byteLength !== expected) return `hello nonce of ${nonce.byteLength} bytes`
  }
  return { version, authenticated: flags === 1, nonce }
}

export const encodeHelloAck = (ack: HelloAck): Uint8Array => {
  const out = new Uint8Array(magic.byteLength + 2 + ack.nonce.byteLength + ack.mac.byteLength)
  out.set(magic, 0)
  out[magic.byteLength] = ack.version
  out[magic.byteLength + 1] = ack.status
  out.set(ack.nonce, magic.byteLength + 2)
  out.set(ack.mac, magic.byteLength + 2 + ack.nonce.byteLength)
  return out
}

export const decodeHelloAck = (body: Uint8Array, authenticated: boolean): HelloAck | string => {
  if (!hasMagic(body) || body.byteLength < magic.byteLength + 2) return "not an Understudy reply"
  const version = body[magic.byteLength]!
  const status = body[magic.byteLength + 1]!
  const rest = body.subarray(magic.byteLength + 2)
  if (status !== HelloStatus.Ok || version !== protocolVersion) {
    return { version, status, nonce: new Uint8Array(0), mac: new Uint8Array(0) }
  }
  const expected = authenticated ? nonceBytes + macBytes : 0
  if (rest.byteLength !== expected) return `reply of ${rest.byteLength} bytes after the header`
  return {
    version,
    status,
    nonce: rest.subarray(0, authenticated ? nonceBytes : 0),
    mac: rest.subarray(authenticated ? nonceBytes : 0),
  }
}

/**
 * An HMAC key. A `KeyObject` is much cheaper per MAC than raw bytes (about 2 µs against
 * 12 µs on Node 24, which probes raw keys for a KeyObject at every call), so keys used more
 * than once are turned into one with `secretKey`.
 */
export type Key = Uint8Array | KeyObject

export const secretKey = (key: Uint8Array): KeyObject => createSecretKey(key)

const hmac = (key: Key, ...parts: ReadonlyArray<Uint8Array | string>): Uint8Array => {
  const h = createHmac("sha256", key)
  for (const part of parts) h.update(part)
  return h.digest()
}

export const serverProof = (key: Key, nonceClient: Uint8Array, nonceServer: Uint8Array) =>
  hmac(key, "understudy/server", nonceClient, nonceServer)

export const clientProof = (key: Key, nonceClient: Uint8Array, nonceServer: Uint8Array) =>
  hmac(key, "understudy/client", nonceServer, nonceClient)

/** Constant-time comparison of two MACs. */
export const macEquals = (a: Uint8Array, b: Uint8Array): boolean =>
  a.byteLength === b.byteLength && timingSafeEqual(a, b)

/** Per-direction MACs over a frame's sequence number, type and payload. */
export class FrameMac {
  private sequence = 0
  private readonly header = new Uint8Array(9)
  private readonly headerView = new DataView(this.header.buffer)
  private readonly key: KeyObject

  constructor(key: Uint8Array) {
    this.key = secretKey(key)
  }

  /** Session keys for both directions of one connection. */
  static pair(
    key: Key,
    nonceClient: Uint8Array,
    nonceServer: Uint8Array,
  ): { readonly clientToServer: FrameMac; readonly serverToClient: FrameMac } {
    return {
      clientToServer: new FrameMac(hmac(key, "understudy/c2s", nonceClient, nonceServer)),
      serverToClient: new FrameMac(hmac(key, "understudy/s2c", nonceClient, nonceServer)),
    }
  }

  private digest(type: number, payload: Uint8Array): Uint8Array {
    this.headerView.setBigUint64(0, BigInt(this.sequence))
    this.header[8] = type
    this.sequence++
    return createHmac("sha256", this.key).update(this.header).update(payload).digest()
  }

  /** Writes the MAC of the next outgoing frame into `into`. */
  readonly sign = (type: number, payload: Uint8Array, into: Uint8Array): void => {
    into.set(this.digest(type, payload))
  }

  /** The payload of the next incoming frame if its MAC is right, else undefined. */
  verify(type: number, body: Uint8Array): Uint8Array | undefined {
    if (body.byteLength < macBytes) return undefined
    const payload = body.subarray(0, body.byteLength - macBytes)
    const mac = body.subarray(body.byteLength - macBytes)
    return macEquals(this.digest(type, payload), mac) ? payload : undefined
  }
}
