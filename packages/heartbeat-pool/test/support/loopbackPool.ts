/**
 * The parts of a one-server pool on loopback UDP that the real-socket tests share: the
 * member `s1` on two free ports, a vendor key pair, the pool key, and a license signer.
 */
import { Ports } from "@understudy/testkit"
import { ClusterKey } from "@understudy/transport"
import { Effect } from "effect"
import * as Signing from "../../src/Signing.ts"

export const loopbackPool = Effect.gen(function* () {
  const [peerPort, clientPort] = yield* Effect.promise(() => Ports.freeUdpPorts(2))
  const vendor = Signing.generateVendorKeys()
  return {
    member: {
      id: "s1",
      peer: { _tag: "Udp" as const, host: "127.0.0.1", port: peerPort! },
      client: { _tag: "Udp" as const, host: "127.0.0.1", port: clientPort! },
    },
    vendor,
    poolSecret: ClusterKey.generate(),
    /** A license for product `cad`, signed by the vendor key. */
    license: (seats: number, sequence: number) =>
      Signing.signLicense(vendor.privatePem, {
        product: "cad",
        seats,
        expiresAtMs: 4e12,
        sequence,
      }),
  }
})
