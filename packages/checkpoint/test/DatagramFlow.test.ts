/**
 * The datagrams of a bundle's UDP flows: a frame and its MAC under the session's secret.
 * A datagram changed anywhere, cut short, or sealed under another secret does not verify;
 * any bytes at all decode to a frame or to nothing, never a throw.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as DatagramFlow from "../src/internal/datagramFlow.ts"
import * as Proof from "../src/Proof.ts"

describe("DatagramFlow datagrams", () => {
  const secret = Proof.newSecret()
  const data = { _tag: "Data" as const, seq: 42, bytes: Uint8Array.of(1, 2, 3) }

  it("a sealed frame peeks back and verifies under its secret only", () => {
    const datagram = DatagramFlow.seal(secret, data)
    expect(DatagramFlow.peek(datagram)).toEqual(data)
    expect(DatagramFlow.verify(secret, datagram)).toBe(true)
    expect(DatagramFlow.verify(Proof.newSecret(), datagram)).toBe(false)
  })

  it("any byte changed, or the datagram cut short, fails the MAC", () => {
    const datagram = DatagramFlow.seal(secret, data)
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: datagram.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        (index, flip) => {
          const changed = datagram.slice()
          changed[index] = changed[index]! ^ flip
          return !DatagramFlow.verify(secret, changed)
        },
      ),
    )
    for (let length = 0; length < datagram.length; length++)
      expect(DatagramFlow.verify(secret, datagram.subarray(0, length))).toBe(false)
  })

  it("fuzzed bytes: peek gives a frame or nothing, verify false; never a throw", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2_048 }), (bytes) => {
        DatagramFlow.peek(bytes)
        return !DatagramFlow.verify(secret, bytes)
      }),
      { numRuns: 2_000 },
    )
  })
})
