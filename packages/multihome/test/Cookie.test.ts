import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Cookie from "../src/Cookie.ts"

const secret = (fill: number) => new Uint8Array(32).fill(fill)

const contents: Cookie.CookieContents = {
  myTag: 0x1234_5678,
  peerTag: 0xdead_beef,
  myInitialTsn: 1,
  peerInitialTsn: 0xffff_ffff,
  peerRwnd: 131_072,
  outboundStreams: 10,
  inboundStreams: 2048,
  localPort: 5000,
  peerPort: 58_797,
  peerAddresses: ["127.0.0.2", "::1", "fd00::2"],
  createdMs: 1_000_000.5,
  lifespanMs: 60_000,
}

const u32 = fc.integer({ min: 0, max: 0xffff_ffff })
const u16 = fc.integer({ min: 0, max: 0xffff })
const arbitraryContents: fc.Arbitrary<Cookie.CookieContents> = fc
  .record({
    myTag: u32,
    peerTag: u32,
    myInitialTsn: u32,
    peerInitialTsn: u32,
    peerRwnd: u32,
    outboundStreams: u16,
    inboundStreams: u16,
    localPort: u16,
    peerPort: u16,
    peerAddresses: fc.array(fc.oneof(fc.ipV4(), fc.ipV6()), { maxLength: 6 }),
    createdMs: fc.double({ min: 0, max: 1e13, noNaN: true }),
    lifespanMs: u32,
    tieTags: fc.option(fc.tuple(u32, u32), { nil: undefined }),
    extra: fc.option(fc.uint8Array({ maxLength: 40 }), { nil: undefined }),
    forwardTsn: fc.boolean(),
  })
  .map(({ tieTags, extra, forwardTsn, ...rest }) => ({
    ...rest,
    ...(forwardTsn ? { forwardTsn: true } : {}),
    ...(tieTags === undefined ? {} : { tieTagLocal: tieTags[0], tieTagPeer: tieTags[1] }),
    ...(extra === undefined ? {} : { extra }),
  }))

describe("Cookie (RFC 9260 §5.1.3, §5.1.5)", () => {
  it("round-trips the contents and starts with the version byte", () => {
    const secrets = Cookie.CookieSecrets.create(secret(1), 0)
    const cookie = Cookie.seal(secrets, contents)
    expect(cookie[0]).toBe(Cookie.version)
    expect(Cookie.open(secrets, cookie, contents.createdMs + 10)).toEqual({
      _tag: "Valid",
      contents,
    })
    const withTies = {
      ...contents,
      tieTagLocal: 7,
      tieTagPeer: 0xffff_ffff,
      extra: new Uint8Array([1, 2, 3]),
    }
    expect(Cookie.open(secrets, Cookie.seal(secrets, withTies), contents.createdMs)).toEqual({
      _tag: "Valid",
      contents: withTies,
    })
  })

  it("is valid through its lifespan and stale after it, with the staleness in µs (§5.1.5 step 3, §3.3.10.3)", () => {
    const secrets = Cookie.CookieSecrets.create(secret(1), 0)
    const cookie = Cookie.seal(secrets, contents)
    const expiry = contents.createdMs + contents.lifespanMs
    expect(Cookie.open(secrets, cookie, expiry)._tag).toBe("Valid")
    expect(Cookie.open(secrets, cookie, expiry + 2.5)).toEqual({
      _tag: "Stale",
      stalenessUs: 2500,
      contents,
    })
    expect(Cookie.open(secrets, cookie, expiry + 0.0001)).toEqual({
      _tag: "Stale",
      stalenessUs: 1,
      contents,
    })
    expect(Cookie.open(secrets, cookie, expiry + 1e10)).toEqual({
      _tag: "Stale",
      stalenessUs: 0xffff_ffff,
      contents,
    })
  })

  it("opens under the current and the previous secret only (rotation)", () => {
    const secrets = Cookie.CookieSecrets.create(secret(1), 0)
    const first = Cookie.seal(secrets, contents)
    expect(secrets.shouldRotate(59_999, 60_000)).toBe(false)
    expect(secrets.shouldRotate(60_000, 60_000)).toBe(true)
    secrets.rotate(secret(2), 60_000)
    expect(secrets.rotatedAtMs).toBe(60_000)
    expect(secrets.shouldRotate(60_001, 60_000)).toBe(false)
    const second = Cookie.seal(secrets, contents)
    expect(Cookie.open(secrets, first, contents.createdMs)._tag).toBe("Valid")
    expect(Cookie.open(secrets, second, contents.createdMs)._tag).toBe("Valid")
    secrets.rotate(secret(3), 120_000)
    expect(Cookie.open(secrets, first, contents.createdMs)._tag).toBe("Invalid")
    expect(Cookie.open(secrets, second, contents.createdMs)._tag).toBe("Valid")
    expect(
      Cookie.open(Cookie.CookieSecrets.create(secret(9), 0), second, contents.createdMs)._tag,
    ).toBe("Invalid")
  })

  it("checks the MAC before the lifespan: a forged stale cookie is Invalid", () => {
    const secrets = Cookie.CookieSecrets.create(secret(1), 0)
    const forged = Cookie.seal(Cookie.CookieSecrets.create(secret(4), 0), contents)
    expect(Cookie.open(secrets, forged, contents.createdMs + 1e9)._tag).toBe("Invalid")
  })

  it("refuses short input and short secrets", () => {
    const secrets = Cookie.CookieSecrets.create(secret(1), 0)
    expect(Cookie.open(secrets, new Uint8Array(0), 0)._tag).toBe("Invalid")
    expect(Cookie.open(secrets, new Uint8Array(Cookie.macLength + 10), 0)._tag).toBe("Invalid")
    expect(() => Cookie.CookieSecrets.create(new Uint8Array(8), 0)).toThrow(RangeError)
    expect(() => Cookie.seal(secrets, { ...contents, myTag: 2 ** 32 })).toThrow(RangeError)
    expect(() => Cookie.seal(secrets, { ...contents, tieTagLocal: 1 })).toThrow(RangeError)
  })

  it("copies the secrets it is given", () => {
    const key = secret(5)
    const secrets = Cookie.CookieSecrets.create(key, 0)
    const cookie = Cookie.seal(secrets, contents)
    key.fill(6)
    expect(Cookie.open(secrets, cookie, contents.createdMs)._tag).toBe("Valid")
  })

  it("round-trips any contents, and a flipped bit anywhere makes it Invalid (property)", () => {
    fc.assert(
      fc.property(arbitraryContents, fc.nat(), fc.integer({ min: 0, max: 7 }), (value, at, bit) => {
        const secrets = Cookie.CookieSecrets.create(secret(7), 0)
        const cookie = Cookie.seal(secrets, value)
        expect(Cookie.open(secrets, cookie, value.createdMs)).toEqual({
          _tag: "Valid",
          contents: value,
        })
        const tampered = cookie.slice()
        const index = at % tampered.length
        tampered[index] = (tampered[index] as number) ^ (1 << bit)
        expect(Cookie.open(secrets, tampered, value.createdMs)).toEqual({ _tag: "Invalid" })
        // Truncated or extended cookies are invalid too.
        expect(
          Cookie.open(secrets, cookie.subarray(0, cookie.length - 1), value.createdMs)._tag,
        ).toBe("Invalid")
        const longer = new Uint8Array(cookie.length + 1)
        longer.set(cookie)
        expect(Cookie.open(secrets, longer, value.createdMs)._tag).toBe("Invalid")
      }),
      { numRuns: 300 },
    )
  })

  it("restores secrets from a snapshot that open the same cookies (property)", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 64 }),
        fc.option(fc.uint8Array({ minLength: 16, maxLength: 64 }), { nil: undefined }),
        fc.integer({ min: 0, max: 1e12 }),
        (first, second, nowMs) => {
          const secrets = Cookie.CookieSecrets.create(first, nowMs)
          const old = Cookie.seal(secrets, contents)
          if (second !== undefined) secrets.rotate(second, nowMs + 1)
          const snapshot = secrets.snapshot()
          const restored = Cookie.CookieSecrets.restore(structuredClone(snapshot))
          expect(restored.snapshot()).toEqual(snapshot)
          expect(Cookie.open(restored, old, contents.createdMs)._tag).toBe("Valid")
          expect(Cookie.seal(restored, contents)).toEqual(Cookie.seal(secrets, contents))
        },
      ),
      { numRuns: 100 },
    )
  })
})
