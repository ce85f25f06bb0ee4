/**
 * The State Cookie (RFC 9260 §5.1.3, §5.1.5): the TCB an INIT ACK hands the peer instead
 * of keeping state, authenticated by an HMAC-SHA256 under a secret only this endpoint
 * knows, and checked when it comes back in COOKIE ECHO.
 *
 * Layout (version 1, network byte order), followed by the 32-byte MAC over everything
 * before it:
 *
 * ```text
 *  0  u8  version (1)   1  u8  flags (bit 0: Tie-Tags present, bit 1: extra present,
 *                                      bit 2: forwardTsn, bit 3: sourceListed)
 *                                      2 u16 reserved (0)
 *  4  u32 myTag                  8  u32 peerTag
 * 12  u32 myInitialTsn          16  u32 peerInitialTsn                   20 u32 peerRwnd
 * 24  u16 outboundStreams       26  u16 inboundStreams
 * 28  u16 localPort             30  u16 peerPort
 * 32  f64 createdMs             40  u32 lifespanMs
 * 44  [u32 tieTagLocal, u32 tieTagPeer]                      (only with flag bit 0)
 *  …  u16 address count, then per address: u8 length, UTF-8 text of the IP literal
 *  …  [u16 length, extra bytes]                              (only with flag bit 1)
 * ```
 *
 * Secrets rotate (§5.1.3: "the secret key SHOULD change reasonably frequently"): a cookie
 * opens under the current secret or the one before it, so rotating no more often than the
 * cookie lifespan never invalidates a live cookie.
 *
 * @since 0.1.0
 */
import { createHmac, timingSafeEqual } from "node:crypto"

/**
 * The cookie layout version written in its first byte.
 *
 * @since 0.1.0
 * @category constants
 */
export const version = 1

/**
 * Bytes of the MAC (HMAC-SHA256) at the end of every cookie.
 *
 * @since 0.1.0
 * @category constants
 */
export const macLength = 32

/**
 * The shortest secret accepted (the HMAC key; §5.1.3 asks for a secret the peer cannot
 * guess).
 *
 * @since 0.1.0
 * @category constants
 */
export const minSecretLength = 16

/**
 * The most addresses a cookie carries; an INIT listing more is refused by the caller.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxAddresses = 0xffff

const fixedLength = 44
const tieTagsLength = 8

/**
 * What the cookie remembers of the association being set up (§5.1.3: enough to build the
 * TCB from the COOKIE ECHO alone). Tags, TSNs and rwnd are unsigned 32-bit; streams and
 * ports 16-bit; `createdMs` is any finite number of milliseconds; `lifespanMs` 32-bit.
 * `peerAddresses` are IP literals (at most 255 UTF-8 bytes each). The Tie-Tags
 * (§5.2.1, §5.2.2) are present together or not at all.
 *
 * @since 0.1.0
 * @category models
 */
export interface CookieContents {
  readonly myTag: number
  readonly peerTag: number
  readonly myInitialTsn: number
  readonly peerInitialTsn: number
  readonly peerRwnd: number
  readonly outboundStreams: number
  readonly inboundStreams: number
  readonly localPort: number
  readonly peerPort: number
  readonly peerAddresses: ReadonlyArray<string>
  readonly createdMs: number
  readonly lifespanMs: number
  readonly tieTagLocal?: number
  readonly tieTagPeer?: number
  /** The peer's INIT offered Forward-TSN-Supported (RFC 3758 PR-SCTP); absent: no. */
  readonly forwardTsn?: boolean
  /**
   * The INIT listed its own source address (absent: no); `peerAddresses` never holds it.
   * The endpoint's loopback rule depends on it (`Endpoint.loopbackAlias`).
   */
  readonly sourceListed?: boolean
  /** Opaque bytes for the caller (at most 65,535), authenticated with the rest; for
   * whatever else the association wants back from COOKIE ECHO. */
  readonly extra?: Uint8Array
}

/**
 * Plain-data image of {@link CookieSecrets}.
 *
 * @since 0.1.0
 * @category snapshot
 */
export interface CookieSecretsSnapshot {
  readonly current: Uint8Array
  readonly previous: Uint8Array | undefined
  readonly rotatedAtMs: number
}

/**
 * The endpoint's cookie secrets: the current one signs, the current and the previous
 * one verify (mutable).
 *
 * @since 0.1.0
 * @category models
 */
export class CookieSecrets {
  private currentSecret: Uint8Array
  private previousSecret: Uint8Array | undefined
  private rotatedAt: number

  private constructor(current: Uint8Array, previous: Uint8Array | undefined, rotatedAtMs: number) {
    this.currentSecret = current
    this.previousSecret = previous
    this.rotatedAt = rotatedAtMs
  }

  /**
   * Secrets starting with `secret` (copied; at least {@link minSecretLength} bytes, from
   * a good random source held by the caller).
   *
   * @since 0.1.0
   * @category constructors
   */
  static create(secret: Uint8Array, nowMs: number): CookieSecrets {
    return new CookieSecrets(checkSecret(secret), undefined, nowMs)
  }

  /**
   * Rebuilds from {@link CookieSecrets.snapshot}.
   *
   * @since 0.1.0
   * @category snapshot
   */
  static restore(snapshot: CookieSecretsSnapshot): CookieSecrets {
    return new CookieSecrets(
      checkSecret(snapshot.current),
      snapshot.previous === undefined ? undefined : checkSecret(snapshot.previous),
      snapshot.rotatedAtMs,
    )
  }

  /**
   * When the current secret was installed.
   *
   * @since 0.1.0
   * @category getters
   */
  get rotatedAtMs(): number {
    return this.rotatedAt
  }

  /**
   * The secret that signs new cookies.
   *
   * @since 0.1.0
   * @category getters
   */
  get current(): Uint8Array {
    return this.currentSecret
  }

  /**
   * The secret before it, still accepted, if any.
   *
   * @since 0.1.0
   * @category getters
   */
  get previous(): Uint8Array | undefined {
    return this.previousSecret
  }

  /**
   * Installs `newSecret` (copied) for signing; the current one stays valid for opening
   * and the one before it is forgotten.
   *
   * @since 0.1.0
   * @category mutations
   */
  rotate(newSecret: Uint8Array, nowMs: number): void {
    const next = checkSecret(newSecret)
    this.previousSecret = this.currentSecret
    this.currentSecret = next
    this.rotatedAt = nowMs
  }

  /**
   * Whether the current secret is at least `everyMs` old. Choose `everyMs` ≥ the
   * cookie lifespan, so a cookie never outlives both secrets that may have signed it.
   *
   * @since 0.1.0
   * @category getters
   */
  shouldRotate(nowMs: number, everyMs: number): boolean {
    return nowMs - this.rotatedAt >= everyMs
  }

  /**
   * Plain data (copies of the secrets).
   *
   * @since 0.1.0
   * @category snapshot
   */
  snapshot(): CookieSecretsSnapshot {
    return {
      current: this.currentSecret.slice(),
      previous: this.previousSecret?.slice(),
      rotatedAtMs: this.rotatedAt,
    }
  }
}

const checkSecret = (secret: Uint8Array): Uint8Array => {
  if (secret.length < minSecretLength) {
    throw new RangeError(`cookie secret shorter than ${minSecretLength} bytes`)
  }
  return secret.slice()
}

const mac = (secret: Uint8Array, body: Uint8Array): Uint8Array =>
  new Uint8Array(createHmac("sha256", secret).update(body).digest())

const isU32 = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff
const isU16 = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= 0xffff

/**
 * The cookie for `contents`, signed with the current secret. Throws a `RangeError` for
 * contents out of their field ranges (a caller bug, not a peer's doing).
 *
 * @since 0.1.0
 * @category sealing
 */
export const seal = (secrets: CookieSecrets, contents: CookieContents): Uint8Array => {
  const u32s = [
    contents.myTag,
    contents.peerTag,
    contents.myInitialTsn,
    contents.peerInitialTsn,
    contents.peerRwnd,
  ]
  const u16s = [
    contents.outboundStreams,
    contents.inboundStreams,
    contents.localPort,
    contents.peerPort,
  ]
  const hasTieTags = contents.tieTagLocal !== undefined || contents.tieTagPeer !== undefined
  if (
    !u32s.every(isU32) ||
    !u16s.every(isU16) ||
    !isU32(contents.lifespanMs) ||
    !Number.isFinite(contents.createdMs) ||
    (hasTieTags && !(isU32(contents.tieTagLocal ?? -1) && isU32(contents.tieTagPeer ?? -1))) ||
    contents.peerAddresses.length > maxAddresses ||
    (contents.extra !== undefined && contents.extra.length > 0xffff)
  ) {
    throw new RangeError("cookie contents out of range")
  }
  const encoder = new TextEncoder()
  const addresses = contents.peerAddresses.map((address) => encoder.encode(address))
  let length = fixedLength + (hasTieTags ? tieTagsLength : 0) + 2
  for (const address of addresses) {
    if (address.length > 0xff) throw new RangeError("cookie address longer than 255 bytes")
    length += 1 + address.length
  }
  const extra = contents.extra
  if (extra !== undefined) length += 2 + extra.length
  const cookie = new Uint8Array(length + macLength)
  const view = new DataView(cookie.buffer)
  view.setUint8(0, version)
  view.setUint8(
    1,
    (hasTieTags ? 1 : 0) |
      (extra !== undefined ? 2 : 0) |
      (contents.forwardTsn === true ? 4 : 0) |
      (contents.sourceListed === true ? 8 : 0),
  )
  for (const [index, value] of u32s.entries()) view.setUint32(4 + 4 * index, value)
  for (const [index, value] of u16s.entries()) view.setUint16(24 + 2 * index, value)
  view.setFloat64(32, contents.createdMs)
  view.setUint32(40, contents.lifespanMs)
  let offset = fixedLength
  if (hasTieTags) {
    view.setUint32(offset, contents.tieTagLocal as number)
    view.setUint32(offset + 4, contents.tieTagPeer as number)
    offset += tieTagsLength
  }
  view.setUint16(offset, addresses.length)
  offset += 2
  for (const address of addresses) {
    view.setUint8(offset, address.length)
    cookie.set(address, offset + 1)
    offset += 1 + address.length
  }
  if (extra !== undefined) {
    view.setUint16(offset, extra.length)
    cookie.set(extra, offset + 2)
  }
  cookie.set(mac(secrets.current, cookie.subarray(0, length)), length)
  return cookie
}

/**
 * What {@link open} found: `Valid` with the contents; `Stale` when authentic but older
 * than its lifespan, with the contents and the staleness in microseconds for the Stale Cookie cause
 * (§3.3.10.3, at most 2^32 − 1, at least 1); `Invalid` for anything not sealed by one of
 * our two secrets or not in our layout (§5.1.5 step 2: discard silently).
 *
 * @since 0.1.0
 * @category sealing
 */
export type Opened =
  | { readonly _tag: "Valid"; readonly contents: CookieContents }
  | {
      readonly _tag: "Stale"
      readonly stalenessUs: number
      /** Authentic contents: the ERROR needs the peer's tag, §5.2.4 case D the tags. */
      readonly contents: CookieContents
    }
  | { readonly _tag: "Invalid" }

const invalid: Opened = { _tag: "Invalid" }

/**
 * Authenticates and decodes a cookie from COOKIE ECHO (§5.1.5 steps 1–3): the MAC first
 * (under the current secret, then the previous one), then the layout, then the lifespan
 * (`nowMs − createdMs > lifespanMs` is stale). The caller still compares the tags and
 * ports with the packet's (§5.1.5 step 3) and applies §5.2.4 to an existing association.
 *
 * @since 0.1.0
 * @category sealing
 */
export const open = (secrets: CookieSecrets, cookie: Uint8Array, nowMs: number): Opened => {
  const length = cookie.length - macLength
  if (length < fixedLength + 2) return invalid
  const body = cookie.subarray(0, length)
  const received = cookie.subarray(length)
  const authentic = (secret: Uint8Array | undefined): boolean =>
    secret !== undefined && timingSafeEqual(mac(secret, body), received)
  if (!authentic(secrets.current) && !authentic(secrets.previous)) return invalid
  const contents = decode(body)
  if (contents === undefined) return invalid
  // §5.1.5 step 3: the lifespan carried in the cookie, from its creation time.
  const overMs = nowMs - contents.createdMs - contents.lifespanMs
  if (overMs > 0) {
    return {
      _tag: "Stale",
      stalenessUs: Math.min(0xffff_ffff, Math.max(1, Math.ceil(overMs * 1000))),
      contents,
    }
  }
  return { _tag: "Valid", contents }
}

/** Decodes an authentic body; `undefined` if it is not our layout (another version). */
const decode = (body: Uint8Array): CookieContents | undefined => {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  if (view.getUint8(0) !== version) return undefined
  const flags = view.getUint8(1)
  if ((flags & ~15) !== 0) return undefined
  const hasTieTags = (flags & 1) === 1
  let offset = fixedLength
  let tieTags: { tieTagLocal: number; tieTagPeer: number } | undefined
  if (hasTieTags) {
    if (body.length < offset + tieTagsLength + 2) return undefined
    tieTags = { tieTagLocal: view.getUint32(offset), tieTagPeer: view.getUint32(offset + 4) }
    offset += tieTagsLength
  }
  const count = view.getUint16(offset)
  offset += 2
  const decoder = new TextDecoder()
  const peerAddresses: Array<string> = []
  for (let index = 0; index < count; index++) {
    if (offset >= body.length) return undefined
    const addressLength = view.getUint8(offset)
    if (offset + 1 + addressLength > body.length) return undefined
    peerAddresses.push(decoder.decode(body.subarray(offset + 1, offset + 1 + addressLength)))
    offset += 1 + addressLength
  }
  let extra: { extra: Uint8Array } | undefined
  if ((flags & 2) === 2) {
    if (offset + 2 > body.length) return undefined
    const extraLength = view.getUint16(offset)
    if (offset + 2 + extraLength > body.length) return undefined
    extra = { extra: body.slice(offset + 2, offset + 2 + extraLength) }
    offset += 2 + extraLength
  }
  if (offset !== body.length) return undefined
  return {
    myTag: view.getUint32(4),
    peerTag: view.getUint32(8),
    myInitialTsn: view.getUint32(12),
    peerInitialTsn: view.getUint32(16),
    peerRwnd: view.getUint32(20),
    outboundStreams: view.getUint16(24),
    inboundStreams: view.getUint16(26),
    localPort: view.getUint16(28),
    peerPort: view.getUint16(30),
    peerAddresses,
    createdMs: view.getFloat64(32),
    lifespanMs: view.getUint32(40),
    ...tieTags,
    ...((flags & 4) === 4 ? { forwardTsn: true } : {}),
    ...((flags & 8) === 8 ? { sourceListed: true } : {}),
    ...extra,
  }
}
