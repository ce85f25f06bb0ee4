/**
 * Signatures of the pool, all Ed25519 from `node:crypto`: authorisation tokens signed by the
 * pool key (derived, with the datagram MAC key, from the pool's shared secret: a key file
 * written by `ClusterKey.generateFile`), and license files signed by the vendor's key.
 *
 * @since 0.1.0
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  sign,
  verify,
} from "node:crypto"
import { Redacted } from "effect"
import type { Crypto } from "./Machine.ts"
import type { License, Token } from "./Message.ts"

/** The keys a pool member derives from the pool secret. @since 0.1.0 @category models */
export interface PoolKeys {
  readonly tokenPrivate: KeyObject
  readonly tokenPublic: KeyObject
  /** The keys that sign and check a resource defined in code (`Resource`). */
  readonly resourcePrivate: KeyObject
  readonly resourcePublic: KeyObject
  /** The datagram MAC key (for `Authentication.keyed`). */
  readonly mac: Uint8Array
}

// PKCS#8 DER of an Ed25519 private key, up to its 32-byte seed.
const pkcs8Prefix = Buffer.from("302e020100300506032b657004220420", "hex")

const derive = (secret: Uint8Array, info: string): Buffer =>
  Buffer.from(hkdfSync("sha256", secret, "understudy/heartbeat-pool", info, 32))

/**
 * The pool's keys from its shared secret (at least 16 bytes).
 *
 * @since 0.1.0
 * @category constructors
 */
export const poolKeys = (secret: Uint8Array | Redacted.Redacted<Uint8Array>): PoolKeys => {
  const bytes = Redacted.isRedacted(secret) ? Redacted.value(secret) : secret
  if (bytes.byteLength < 16) throw new RangeError("a pool secret has at least 16 bytes")
  const privateKey = (info: string) =>
    createPrivateKey({
      key: Buffer.concat([pkcs8Prefix, derive(bytes, info)]),
      format: "der",
      type: "pkcs8",
    })
  const tokenPrivate = privateKey("token")
  const resourcePrivate = privateKey("resource")
  return {
    tokenPrivate,
    tokenPublic: createPublicKey(tokenPrivate),
    resourcePrivate,
    resourcePublic: createPublicKey(resourcePrivate),
    mac: derive(bytes, "datagram"),
  }
}

const tokenText = (claims: Omit<Token, "signature">): string =>
  JSON.stringify([
    "understudy/token/1",
    claims.client,
    claims.server,
    claims.term,
    claims.product,
    claims.seats,
    claims.validUntilMs,
  ])

const tokenBytes = (claims: Omit<Token, "signature">): Buffer => Buffer.from(tokenText(claims))

const licenseBytes = (license: Omit<License, "signature">): Buffer =>
  Buffer.from(
    JSON.stringify([
      "understudy/license/1",
      license.product,
      license.seats,
      license.expiresAtMs,
      license.sequence,
    ]),
  )

const check = (data: Buffer, key: KeyObject, signature: string): boolean => {
  try {
    return verify(null, data, key, Buffer.from(signature, "base64url"))
  } catch {
    return false
  }
}

/** @since 0.1.0 @category tokens */
export const signToken = (keys: PoolKeys, claims: Omit<Token, "signature">): string =>
  sign(null, tokenBytes(claims), keys.tokenPrivate).toString("base64url")

/** @since 0.1.0 @category tokens */
export const verifyToken = (keys: PoolKeys, token: Token): boolean =>
  check(tokenBytes(token), keys.tokenPublic, token.signature)

/**
 * Tokens verified at most, remembered by `cachingVerifier` (the clients of a big pool, each
 * with its token; the oldest is forgotten first).
 *
 * @since 0.1.0
 * @category tokens
 */
export const verifiedTokensMax = 16_384

/**
 * `verify` remembering the tokens it accepted, by their exact claims and signature: a client
 * resends the same token with every heartbeat until a server gives it one of its own (a
 * re-attachment under load: several per client), and each Ed25519 verification costs ~50 µs.
 * A token that differs in any claim or in its signature is a new key, verified afresh; a
 * refusal is not remembered. At most `capacity` tokens, the oldest forgotten first.
 *
 * @since 0.1.0
 * @category tokens
 */
export const cachingVerifier = (
  verify: (token: Token) => boolean,
  capacity: number = verifiedTokensMax,
): ((token: Token) => boolean) => {
  const verified = new Set<string>()
  return (token) => {
    const key = `${tokenText(token)}\n${token.signature}`
    if (verified.has(key)) return true
    if (!verify(token)) return false
    if (verified.size >= capacity) verified.delete(verified.values().next().value!)
    verified.add(key)
    return true
  }
}

/** A vendor key pair, PEM encoded. @since 0.1.0 @category licenses */
export const generateVendorKeys = (): {
  readonly privatePem: string
  readonly publicPem: string
} => {
  const pair = generateKeyPairSync("ed25519")
  return {
    privatePem: pair.privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
    publicPem: pair.publicKey.export({ format: "pem", type: "spki" }).toString(),
  }
}

/** Signs a license with the vendor's private key. @since 0.1.0 @category licenses */
export const signLicense = (
  vendorPrivate: KeyObject | string,
  license: Omit<License, "signature">,
): License => ({
  ...license,
  signature: sign(
    null,
    licenseBytes(license),
    typeof vendorPrivate === "string" ? createPrivateKey(vendorPrivate) : vendorPrivate,
  ).toString("base64url"),
})

/** @since 0.1.0 @category licenses */
export const verifyLicense = (vendorPublic: KeyObject | string, license: License): boolean =>
  check(
    licenseBytes(license),
    typeof vendorPublic === "string" ? createPublicKey(vendorPublic) : vendorPublic,
    license.signature,
  )

/**
 * What the pool machine needs: tokens signed with the pool key, licenses checked with the
 * vendor's public key.
 *
 * @since 0.1.0
 * @category constructors
 */
export const crypto = (keys: PoolKeys, vendorPublic: KeyObject | string): Crypto => {
  const vendor = typeof vendorPublic === "string" ? createPublicKey(vendorPublic) : vendorPublic
  return {
    signToken: (claims) => signToken(keys, claims),
    verifyToken: cachingVerifier((token) => verifyToken(keys, token)),
    verifyLicense: (license) => verifyLicense(vendor, license),
  }
}
