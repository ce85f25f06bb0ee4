import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Association from "../src/Association.ts"
import * as Listener from "../src/Listener.ts"
import * as Packet from "../src/Packet.ts"
import { chunk } from "./arbitraries.ts"
import { established, Loopback, messages } from "./associationHarness.ts"

const config = (localPort: number): Association.Config => ({
  ...Association.defaultConfig,
  localPort,
})
const from = { host: "10.0.0.1", udpPort: 9001 }

describe("Association and Listener under arbitrary packets", () => {
  it("property: arbitrary chunks under the right tag never throw, and outputs stay encodable", () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(chunk, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 20 }),
        fc.boolean(),
        (packets, rightTag) => {
          const lb = new Loopback({ seed: 77 }, config(4000), config(5000))
          expect(lb.run(() => established(lb), 10_000)).toBe(true)
          const server = lb.server!
          let nowMs = lb.nowMs
          for (const chunks of packets) {
            nowMs += 10
            const packet: Packet.Packet = {
              sourcePort: 4000,
              destinationPort: 5000,
              verificationTag: rightTag ? server.myTag : 0x1234,
              chunks,
            }
            const outputs = Association.step(server, {
              _tag: "Receive",
              from,
              message: packet,
              nowMs,
            }).outputs
            for (const output of outputs) {
              if (output._tag === "Send") expect(Packet.size(output.message)).toBeGreaterThan(12)
              if (output._tag === "Send") Packet.encode(output.message)
            }
          }
          return true
        },
      ),
      { numRuns: 200, seed: 99 },
    )
  })

  it("property: wrong-tag packets never disturb an association carrying data", () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(chunk, { minLength: 1, maxLength: 3 }), { maxLength: 10 }),
        (noise) => {
          const lb = new Loopback({ seed: 78 }, config(4000), config(5000))
          expect(lb.run(() => established(lb), 10_000)).toBe(true)
          for (const chunks of noise) {
            const packet = {
              sourcePort: 4000,
              destinationPort: 5000,
              verificationTag: lb.server!.myTag ^ 1,
              chunks,
            }
            Association.step(lb.server!, {
              _tag: "Receive",
              from,
              message: packet,
              nowMs: lb.nowMs,
            })
          }
          for (let index = 0; index < 20; index++) {
            lb.send(true, {
              _tag: "Send",
              stream: 0,
              ppid: 0,
              data: new Uint8Array(300).fill(index),
              unordered: false,
            })
          }
          expect(lb.run(() => messages(lb.serverEvents).length >= 20, 600_000)).toBe(true)
          expect(lb.server!.name).toBe("Established")
          return true
        },
      ),
      { numRuns: 50, seed: 100 },
    )
  })

  it("property: the Listener answers or drops any packet without throwing", () => {
    fc.assert(
      fc.property(
        fc.array(chunk, { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        (chunks, tag) => {
          const listener = Listener.makeListener(config(5000), 5)
          const outcome = Listener.onUnknownPacket(listener, {
            _tag: "Receive",
            from,
            nowMs: 0,
            message: { sourcePort: 4000, destinationPort: 5000, verificationTag: tag, chunks },
          })
          // Out-of-the-blue packets never create an association without a valid cookie.
          expect(outcome.association).toBeUndefined()
          for (const output of outcome.outputs)
            if (output._tag === "Send") Packet.encode(output.message)
          return true
        },
      ),
      { numRuns: 300, seed: 101 },
    )
  })
})
