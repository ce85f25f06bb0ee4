/**
 * Resume proofs: an HMAC-SHA256, under the session's secret, over the session id, a counter
 * the client raises with every attempt, and the acknowledgements it presents. A proof is
 * bound to its session (another session's secret does not verify it), to its
 * acknowledgements (they can not be altered) and to its counter: the takeover server
 * accepts only a counter above every one accepted before, so a captured proof can not be
 * replayed. Secrets and initial sequence numbers come from `node:crypto`.
 *
 * @since 0.1.0
 */
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from "node:crypto"
import { initialSeqBound } from "./Sequence.ts"

/** Bytes of a session secret. @since 0.1.0 @category limits */
export const secretBytes = 32

/** A fresh session secret. @since 0.1.0 @category constructors */
export const newSecret = (): Uint8Array => new Uint8Array(randomBytes(secretBytes))

/** A fresh session id. @since 0.1.0 @category constructors */
export const newSessionId = (): string => randomUUID()

/** A random initial sequence number below 2^48. @since 0.1.0 @category constructors */
export const newInitialSeq = (): number => randomBytes(6).readUIntBE(0, 6) % initialSeqBound

const message = (
  sessionId: string,
  counter: number,
  acks: Readonly<Record<string, number>>,
): string =>
  JSON.stringify([
    "understudy-checkpoint-resume/1",
    sessionId,
    counter,
    Object.keys(acks)
      .sort()
      .map((name) => [name, acks[name]]),
  ])

/**
 * @since 0.1.0
 * @category proofs
 */
export const sign = (
  secret: Uint8Array,
  sessionId: string,
  counter: number,
  acks: Readonly<Record<string, number>>,
): Uint8Array =>
  new Uint8Array(
    createHmac("sha256", secret)
      .update(message(sessionId, counter, acks))
      .digest(),
  )

/**
 * True when `proof` is the HMAC of these values under `secret` (constant-time compare).
 *
 * @since 0.1.0
 * @category proofs
 */
export const verify = (
  secret: Uint8Array,
  sessionId: string,
  counter: number,
  acks: Readonly<Record<string, number>>,
  proof: Uint8Array,
): boolean => {
  const expected = sign(secret, sessionId, counter, acks)
  return proof.length === expected.length && timingSafeEqual(proof, expected)
}
