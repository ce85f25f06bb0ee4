import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Authentication from "../src/Authentication.ts"

const payload = (text: string) => new TextEncoder().encode(text)
const key = () => new Uint8Array(randomBytes(32))

const opened = (result: ReturnType<Authentication.Sealer["open"]>) =>
  "payload" in result ? new TextDecoder().decode(result.payload) : result.dropped

describe("Authentication", () => {
  it("a sealed datagram opens once, at its receiver, with the same key", () => {
    const keyed = Authentication.keyed(key())
    const a = Authentication.sealer(keyed, "a", 1_000)
    const b = Authentication.sealer(keyed, "b", 1_000)
    const c = Authentication.sealer(keyed, "c", 1_000)
    const sealed = a.seal("b", 1_001, payload("hello"))
    expect(sealed.byteLength).toBe(5 + Authentication.overheadBytes)
    expect(opened(c.open("a", 1_001, sealed))).toBe("Unauthenticated")
    // Claimed to come from c: the MAC names a.
    expect(opened(b.open("c", 1_001, sealed))).toBe("Unauthenticated")
    expect(opened(b.open("a", 1_001, sealed))).toBe("hello")
    expect(opened(b.open("a", 1_002, sealed))).toBe("Replayed")
  })

  it("any flipped bit is refused", () => {
    const keyed = Authentication.keyed(key())
    const a = Authentication.sealer(keyed, "a", 0)
    const sealed = a.seal("b", 10, payload("term 7"))
    for (let bit = 0; bit < sealed.byteLength * 8; bit++) {
      const b = Authentication.sealer(keyed, "b", 0)
      const flipped = Uint8Array.from(sealed)
      flipped[bit >> 3]! ^= 1 << (bit & 7)
      expect(opened(b.open("a", 10, flipped))).toBe("Unauthenticated")
    }
  })

  it("counters increase strictly, even within one millisecond and across a restart", () => {
    const keyed = Authentication.keyed(key())
    const b = Authentication.sealer(keyed, "b", 0)
    const first = Authentication.sealer(keyed, "a", 0)
    const sent = Array.from({ length: 5 }, (_, i) => first.seal("b", 50, payload(`m${i}`)))
    // Delivered out of order: all accepted once.
    for (const index of [3, 0, 4, 1, 2]) {
      expect(opened(b.open("a", 51, sent[index]!))).toBe(`m${index}`)
    }
    // The sender restarts a millisecond later and continues above.
    const restarted = Authentication.sealer(keyed, "a", 51)
    expect(opened(b.open("a", 52, restarted.seal("b", 51, payload("again"))))).toBe("again")
  })

  it("refuses what was sent before the receiver started, too long ago, or in the future", () => {
    const keyed = Authentication.keyed(key(), { freshnessMs: 1_000 })
    const a = Authentication.sealer(keyed, "a", 0)
    const early = a.seal("b", 100, payload("before b restarted"))
    const restartedB = Authentication.sealer(keyed, "b", 200)
    expect(opened(restartedB.open("a", 300, early))).toBe("Stale")
    const b = Authentication.sealer(keyed, "b", 0)
    const old = a.seal("b", 1_000, payload("old"))
    expect(opened(b.open("a", 2_500, old))).toBe("Stale")
    const future = a.seal("b", 10_000, payload("future"))
    expect(opened(b.open("a", 8_000, future))).toBe("Future")
    expect(opened(b.open("a", 9_500, future))).toBe("future")
  })

  it("remembers a bounded number of counters, and refuses what it forgot", () => {
    const keyed = Authentication.keyed(key(), { rememberedMax: 4 })
    const a = Authentication.sealer(keyed, "a", 0)
    const b = Authentication.sealer(keyed, "b", 0)
    const sent = Array.from({ length: 10 }, (_, i) => a.seal("b", 1 + i, payload(`m${i}`)))
    for (const [index, datagram] of sent.entries()) {
      expect(opened(b.open("a", 20, datagram))).toBe(`m${index}`)
    }
    // Everything is refused again: the last 4 as seen, the rest as forgotten.
    for (const datagram of sent) expect(opened(b.open("a", 20, datagram))).toBe("Replayed")
  })

  it("insecure passes bytes through unchanged", () => {
    const sealer = Authentication.sealer(Authentication.insecure, "a", 0)
    const bytes = payload("plain")
    expect(sealer.seal("b", 0, bytes)).toBe(bytes)
    expect(opened(sealer.open("b", 0, bytes))).toBe("plain")
  })

  it("refuses a short key", () => {
    expect(() => Authentication.keyed(new Uint8Array(8))).toThrow(RangeError)
  })

  it("random bytes never open and never throw", () => {
    const b = Authentication.sealer(Authentication.keyed(key()), "b", 0)
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        expect(opened(b.open("a", 0, bytes))).toBe("Unauthenticated")
      }),
      { numRuns: 2_000 },
    )
  })
})
