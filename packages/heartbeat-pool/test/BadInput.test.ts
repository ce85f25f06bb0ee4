/**
 * Bad input: every decoder turns random or mangled bytes into a typed `CodecError`, never a
 * throw; the real Ed25519 signatures refuse forged or altered tokens and licenses; and the
 * machine, fed any decoded message from any sender, never throws and never grants a seat to
 * a client without a valid token.
 */
import { describe, expect, it } from "@effect/vitest"
import { Machine as M } from "@understudy/machine"
import { Result } from "effect"
import fc from "fast-check"
import * as Machine from "../src/Machine.ts"
import * as Message from "../src/Message.ts"
import * as Signing from "../src/Signing.ts"
import { tokenClaims } from "./support/pool.ts"
import { license, timing } from "./support/sim.ts"

/** Whether each decoder refused the bytes. */
const refused = (bytes: Uint8Array): Array<boolean> => [
  Result.isFailure(Message.peerCodec.decode(bytes)),
  Result.isFailure(Message.clientRequestCodec.decode(bytes)),
  Result.isFailure(Message.serverReplyCodec.decode(bytes)),
  Result.isFailure(Message.licenseFileCodec.decode(bytes)),
]
const encoder = new TextEncoder()

describe("bad input", () => {
  it("random bytes and mangled JSON decode to a CodecError, never a throw", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        expect(refused(bytes)).toEqual([true, true, true, true])
      }),
      { numRuns: 2_000 },
    )
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        refused(encoder.encode(JSON.stringify(value)))
      }),
      { numRuns: 2_000 },
    )
    const heartbeat = encoder.encode(
      JSON.stringify({
        _tag: "Heartbeat",
        term: -1,
        seq: 1,
        sequence: 1,
        authorityUntilMs: 0,
        wantRecord: false,
        live: [],
        shareLife: 0,
        shareLimit: 0,
        merged: null,
      }),
    )
    expect(Result.isFailure(Message.peerCodec.decode(heartbeat))).toBe(true)
  })

  it("Wait and WaitForShares: every valid one decodes to itself; a field missing, of the wrong type or out of range is refused", () => {
    const count = fc.nat()
    const millis = fc.double({ min: 0, max: 1e12, noNaN: true })
    const id = fc.string({ maxLength: 128 })
    const wait = fc.record({
      _tag: fc.constant("Wait" as const),
      server: id,
      client: id,
      term: count,
      seq: count,
      retryAfterMs: millis,
    })
    const waitForShares = fc.record({
      _tag: fc.constant("WaitForShares" as const),
      term: count,
      client: id,
      seats: count,
      retryAfterMs: millis,
    })
    const bad = fc.constantFrom(undefined, null, -1, 1.5, "1", true, "x".repeat(129))
    /** Whether `value` is a valid `field` after all (a fraction of a millisecond is). */
    const fits = (field: string, value: unknown) =>
      field === "server" || field === "client"
        ? typeof value === "string" && value.length <= 128
        : field === "retryAfterMs"
          ? typeof value === "number" && value >= 0
          : Number.isInteger(value) && (value as number) >= 0
    /** Each message, and the same with one field (not its tag) replaced by a bad value. */
    const cases = <A extends { readonly _tag: string }>(
      message: fc.Arbitrary<A>,
      codec: { decode: (bytes: Uint8Array) => Result.Result<unknown, unknown> },
    ) =>
      fc.assert(
        fc.property(message, fc.nat(), bad, (value, index, replacement) => {
          const decoded = codec.decode(encoder.encode(JSON.stringify(value)))
          expect(Result.getOrThrow(decoded)).toEqual(value)
          const fields = Object.keys(value).filter((key) => key !== "_tag")
          const field = fields[index % fields.length]!
          if (fits(field, replacement)) return
          const mangled: Record<string, unknown> = { ...value, [field]: replacement }
          if (replacement === undefined) delete mangled[field]
          expect(Result.isFailure(codec.decode(encoder.encode(JSON.stringify(mangled))))).toBe(true)
        }),
        { numRuns: 1_000 },
      )
    cases(wait, Message.serverReplyCodec)
    cases(waitForShares, Message.peerCodec)
  })

  it("Ed25519: forged, altered or foreign tokens and licenses do not verify", () => {
    const keys = Signing.poolKeys(new Uint8Array(32).fill(7))
    const other = Signing.poolKeys(new Uint8Array(32).fill(8))
    const token = { ...tokenClaims, signature: Signing.signToken(keys, tokenClaims) }
    expect(Signing.verifyToken(keys, token)).toBe(true)
    expect(Signing.verifyToken(keys, { ...token, seats: 2 })).toBe(false)
    expect(Signing.verifyToken(keys, { ...token, client: "c2" })).toBe(false)
    expect(Signing.verifyToken(other, token)).toBe(false)
    expect(Signing.verifyToken(keys, { ...token, signature: "not base64 !!" })).toBe(false)
    const vendor = Signing.generateVendorKeys()
    const file = Signing.signLicense(vendor.privatePem, {
      product: "cad",
      seats: 15,
      expiresAtMs: 1e12,
      sequence: 4,
    })
    expect(Signing.verifyLicense(vendor.publicPem, file)).toBe(true)
    expect(Signing.verifyLicense(vendor.publicPem, { ...file, seats: 1_000 })).toBe(false)
    expect(Signing.verifyLicense(vendor.publicPem, { ...file, sequence: 5 })).toBe(false)
    expect(Signing.verifyLicense(Signing.generateVendorKeys().publicPem, file)).toBe(false)
  })

  it("the machine, fed arbitrary messages from anyone, never throws and grants nothing without a valid token", () => {
    const keys = Signing.poolKeys(new Uint8Array(32).fill(7))
    const vendor = Signing.generateVendorKeys()
    const pool = Machine.make({
      servers: ["s1", "s2", "s3"],
      ...timing,
      crypto: Signing.crypto(keys, vendor.publicPem),
      initialLicense: license(5),
    })
    const token = fc.record({
      client: fc.constantFrom("c1", "c2"),
      server: fc.constantFrom("s1", "s2"),
      term: fc.nat(),
      product: fc.constant("cad"),
      seats: fc.integer({ min: 0, max: 3 }),
      validUntilMs: fc.nat(),
      signature: fc.string(),
    })
    const beat = fc.record({
      _tag: fc.constant("Beat" as const),
      client: fc.constantFrom("c1", "c2"),
      seq: fc.nat(),
      token,
      leaseUntilMs: fc.nat(),
    })
    const peer = fc.oneof(
      fc.record({
        _tag: fc.constant("Heartbeat" as const),
        term: fc.nat(),
        seq: fc.nat(),
        sequence: fc.nat(),
        authorityUntilMs: fc.nat(),
        wantRecord: fc.boolean(),
        live: fc.constant(["s1"]),
        shareLife: fc.nat({ max: 2 }),
        shareLimit: fc.nat({ max: 5 }),
        merged: fc.option(fc.record({ life: fc.nat({ max: 2 }), version: fc.nat() })),
      }),
      fc.record({
        _tag: fc.constant("Record" as const),
        term: fc.nat(),
        version: fc.nat(),
        life: fc.nat({ max: 2 }),
        shareUsed: fc.nat({ max: 5 }),
        part: fc.nat({ max: 3 }),
        parts: fc.nat({ max: 3 }),
        allocations: fc.constant([]),
      }),
      fc.record({ _tag: fc.constant("Vote" as const), term: fc.nat(), granted: fc.boolean() }),
      fc.record({ _tag: fc.constant("VoteRequest" as const), term: fc.nat() }),
      fc.record({
        _tag: fc.constant("WaitForShares" as const),
        term: fc.nat(),
        client: fc.constantFrom("c1", "c2"),
        seats: fc.nat({ max: 3 }),
        retryAfterMs: fc.nat(),
      }),
      fc.record({
        _tag: fc.constant("Reserve" as const),
        term: fc.nat(),
        client: fc.string(),
        seats: fc.nat(),
        reattach: fc.boolean(),
        heldAt: fc.constantFrom(null, "s2", "s3"),
      }),
    )
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            beat.map((message) => ({ client: message })),
            fc.record({ from: fc.constantFrom("s2", "s3", "x"), message: peer }),
          ),
          { maxLength: 40 },
        ),
        (inputs) => {
          let state = pool.init({ self: "s1", peers: ["s2", "s3"], nowMs: 0 }).state
          let nowMs = 0
          for (const input of inputs) {
            nowMs += 50
            const result =
              "client" in input
                ? pool.step(
                    state,
                    M.command(
                      { _tag: "FromClient", from: input.client.client, message: input.client },
                      nowMs,
                    ),
                  )
                : pool.step(state, M.receive(input.from, input.message, nowMs))
            for (const event of M.events(result.outputs)) {
              // No signature was made with the pool key, so nothing may be granted to a beat.
              expect(event._tag === "Allocated" && "client" in input).toBe(false)
            }
            state = result.state
          }
        },
      ),
      { numRuns: 300 },
    )
  })
})
