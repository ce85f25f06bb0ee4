/**
 * The parts of a one-server pool on loopback UDP that the real-socket tests share: the
 * member `s1` on two free ports, a vendor key pair, the pool key, a license signer, and the
 * options of the server `s1` they make (`server`: all but its state directory and license).
 */
import { Ports } from "@understudy/testkit"
import { ClusterKey } from "@understudy/transport"
import { Effect } from "effect"
import type * as Server from "../../src/Server.ts"
import * as Signing from "../../src/Signing.ts"

export const loopbackPool = Effect.gen(function* () {
  const [peerPort, clientPort] = yield* Effect.promise(() => Ports.freeUdpPorts(2))
  const vendor = Signing.generateVendorKeys()
  const member = {
    id: "s1",
    peer: { _tag: "Udp" as const, host: "127.0.0.1", port: peerPort! },
    client: { _tag: "Udp" as const, host: "127.0.0.1", port: clientPort! },
  }
  const poolSecret = ClusterKey.generate()
  const server = {
    self: member.id,
    members: [member],
    poolSecret,
    vendorPublicKey: vendor.publicPem,
  } satisfies Partial<Server.Options>
  return {
    member,
    poolSecret,
    server,
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
