/**
 * What the multi-server tests set up the same way: a state directory removed after the file's
 * tests, three servers `s1`–`s3` (on SimNet hosts of their names, or on free loopback ports),
 * and a pool key with a vendor-signed license for product `cad`.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Ports } from "@understudy/testkit"
import { Address, ClusterKey, type SimNet } from "@understudy/transport"
import { Effect } from "effect"
import { afterAll } from "vitest"
import * as Server from "../../src/Server.ts"
import * as Signing from "../../src/Signing.ts"

/** A fresh directory for servers' state, removed after this test file. */
export const stateRoot = (prefix: string): string => {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export const servers = ["s1", "s2", "s3"]

export interface Member {
  readonly id: string
  readonly peer: Address.Udp
  readonly client: Address.Udp
}

/** The three servers on SimNet: peer port 1, client port 2 of the host named after each. */
export const simMembers: ReadonlyArray<Member> = servers.map((id) => ({
  id,
  peer: Address.udp(id, 1),
  client: Address.udp(id, 2),
}))

/** The three servers on six free loopback UDP ports. */
export const loopbackMembers: Effect.Effect<ReadonlyArray<Member>> = Effect.gen(function* () {
  const ports = yield* Effect.promise(() => Ports.freeUdpPorts(6))
  return servers.map((id, index) => ({
    id,
    peer: Address.udp("127.0.0.1", ports[index]!),
    client: Address.udp("127.0.0.1", ports[index + 3]!),
  }))
})

/** A pool key, and a license of `seats` for product `cad` signed by a new vendor key. */
export const signedPool = (seats: number) => {
  const vendor = Signing.generateVendorKeys()
  return {
    secret: ClusterKey.generate(),
    vendor,
    license: Signing.signLicense(vendor.privatePem, {
      product: "cad",
      seats,
      expiresAtMs: 4e12,
      sequence: 1,
    }),
  }
}

/** The claims of a one-seat token of product `cad` for c1 from s1 in term 3 (to be signed). */
export const tokenClaims = {
  client: "c1",
  server: "s1",
  term: 3,
  product: "cad",
  seats: 1,
  validUntilMs: 9_000,
}

/** The three servers `simMembers` running on `net` for the pool `pool`, their state under `dir`. */
export const simServers = (
  net: SimNet.SimNet,
  pool: ReturnType<typeof signedPool>,
  dir: string,
  timing: Server.Timing,
) =>
  Effect.forEach(
    simMembers,
    (member) =>
      net.run(
        member.id,
        Effect.andThen(
          Server.run({
            self: member.id,
            members: simMembers,
            poolSecret: pool.secret,
            vendorPublicKey: pool.vendor.publicPem,
            stateDir: join(dir, member.id),
            license: pool.license,
            timing,
          }),
          Effect.never,
        ),
      ),
    { discard: true },
  )
