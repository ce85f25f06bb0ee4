/**
 * The verifier of tokens remembers the tokens it accepted: a client resends the same token
 * with every heartbeat until a server issues it one of its own, and an Ed25519 verification
 * is the costly part of a re-attachment. Remembering must never let a token through that
 * the key did not sign.
 */
import { describe, expect, it } from "@effect/vitest"
import { ClusterKey } from "@understudy/transport"
import type * as Message from "../src/Message.ts"
import * as Resource from "../src/Resource.ts"
import * as Signing from "../src/Signing.ts"
import { tokenClaims } from "./support/pool.ts"

const claims = tokenClaims

describe("the token verifier", () => {
  it("verifies a token once, however often it comes; a refusal is asked again", () => {
    const asked: Array<Message.Token> = []
    const verify = Signing.cachingVerifier((token) => {
      asked.push(token)
      return token.signature === "good"
    })
    const token = { ...claims, signature: "good" }
    expect([verify(token), verify({ ...token }), verify(token)]).toEqual([true, true, true])
    expect(asked).toHaveLength(1)
    const bad = { ...claims, signature: "bad" }
    expect([verify(bad), verify(bad)]).toEqual([false, false])
    expect(asked).toHaveLength(3)
  })

  it("a token that differs from a remembered one in any claim or in its signature is verified afresh", () => {
    const asked: Array<Message.Token> = []
    const verify = Signing.cachingVerifier((token) => {
      asked.push(token)
      return false
    })
    const known = Signing.cachingVerifier((token) => token.seats === 1 && token.signature === "s")
    expect(known({ ...claims, signature: "s" })).toBe(true)
    // The remembered payload with more seats, or another signature: refused.
    expect(known({ ...claims, seats: 2, signature: "s" })).toBe(false)
    expect(known({ ...claims, signature: "t" })).toBe(false)
    for (const changed of [
      { client: "c2" },
      { server: "s2" },
      { term: 4 },
      { product: "cam" },
      { seats: 2 },
      { validUntilMs: 9_001 },
      { signature: "other" },
    ])
      expect(verify({ ...claims, signature: "s", ...changed })).toBe(false)
    expect(asked).toHaveLength(7)
  })

  it("remembers at most its capacity, the oldest forgotten first", () => {
    let asked = 0
    const verify = Signing.cachingVerifier(() => {
      asked++
      return true
    }, 2)
    const token = (client: string) => ({ ...claims, client, signature: "good" })
    verify(token("a"))
    verify(token("b"))
    verify(token("c"))
    expect(asked).toBe(3)
    verify(token("c"))
    verify(token("b"))
    expect(asked).toBe(3)
    verify(token("a"))
    expect(asked).toBe(4)
  })

  it("with the pool's keys: a forged token with a remembered payload is refused", () => {
    for (const crypto of [
      Signing.crypto(
        Signing.poolKeys(ClusterKey.generate()),
        Signing.generateVendorKeys().publicPem,
      ),
      Resource.crypto(Signing.poolKeys(ClusterKey.generate())),
    ]) {
      const token = { ...claims, signature: crypto.signToken(claims) }
      expect([crypto.verifyToken(token), crypto.verifyToken(token)]).toEqual([true, true])
      const forged = { ...token, signature: Buffer.alloc(64, 7).toString("base64url") }
      expect(crypto.verifyToken(forged)).toBe(false)
      expect(crypto.verifyToken({ ...token, seats: 5 })).toBe(false)
      expect(crypto.verifyToken({ ...token, client: "c2" })).toBe(false)
    }
  })
})
