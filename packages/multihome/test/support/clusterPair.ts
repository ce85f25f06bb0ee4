/**
 * A two-node cluster on SimNet for the Cluster tests: the primary on 10.0.0.2, the secondary
 * on 10.0.0.3 (it listens for the link on 7000), SCTP port 7 over UDP 9899, short association
 * timers and a keyed link. A secondary that takes the primary's address over
 * (`failover: "takeover"` / `"both"`) binds it through the primary's host, whose IP is free
 * once that host crashed.
 */
import { Address, Datagram, type SimNet, type Transport } from "@understudy/transport"
import { Deferred, Effect, type Fiber, Redacted, type Scope } from "effect"
import * as Cluster from "../../src/Cluster.ts"
import type * as Endpoint from "../../src/Endpoint.ts"
import { advance } from "./endpoint-support.ts"

export const primaryHost = "10.0.0.2"
export const secondaryHost = "10.0.0.3"
export const peerHost = "10.0.0.9"
export const udpPort = 9899
export const sctpPort = 7

/** Short timers, as a tuned peer would have them: a dead path is left within seconds. */
export const quick: Endpoint.AssociationOptions = {
  rtoInitial: 300,
  rtoMin: 100,
  rtoMax: 400,
  pathMaxRetrans: 2,
  heartbeatInterval: 1_000,
}

/** The link is keyed, as by default. */
export const clusterKey = Redacted.make(new Uint8Array(32).fill(7))

/**
 * One node of the pair, in the scope and services of its host's program (`net.run`):
 * every-update unless `options` says otherwise.
 */
export const pairNode = (
  net: SimNet.SimNet,
  role: Cluster.Role,
  options: Partial<Cluster.Options> = {},
): Effect.Effect<
  Cluster.Node,
  Cluster.ClusterError,
  Transport.Transport | Datagram.Datagram | Scope.Scope
> =>
  Effect.gen(function* () {
    const own = yield* Datagram.Datagram
    const primarys = yield* Effect.provide(
      Effect.service(Datagram.Datagram),
      net.layer(primaryHost),
    )
    const datagram = Datagram.Datagram.of({
      bind: (address, bindOptions) =>
        address.host === primaryHost && role === "secondary"
          ? primarys.bind(address, bindOptions)
          : own.bind(address, bindOptions),
    })
    return yield* Cluster.make({
      role,
      bind: Address.udp(role === "primary" ? primaryHost : secondaryHost, udpPort),
      port: sctpPort,
      addresses: [primaryHost, secondaryHost],
      link: Address.tcp(secondaryHost, 7000),
      policy: { _tag: "EveryUpdate" },
      config: quick,
      seed: role === "primary" ? 11 : 12,
      clusterKey,
      ...options,
    }).pipe(Effect.provideService(Datagram.Datagram, datagram))
  })

/**
 * The two nodes on `net`, both with `options`: the secondary inside `net.run`, the primary
 * outside it (its host comes back empty after a crash, as after its process's death: crash
 * the host, interrupt `primary`, restart the host). Returns them 200 ms later, linked.
 */
export const startPair = (
  net: SimNet.SimNet,
  options: Partial<Cluster.Options> = {},
): Effect.Effect<
  { readonly secondary: Cluster.Node; readonly primary: Fiber.Fiber<unknown, unknown> },
  never,
  Scope.Scope
> =>
  Effect.gen(function* () {
    const secondary = yield* Deferred.make<Cluster.Node>()
    yield* net.run(
      secondaryHost,
      Effect.gen(function* () {
        yield* Deferred.succeed(secondary, yield* pairNode(net, "secondary", options))
        return yield* Effect.never
      }),
    )
    const primary = yield* Effect.forkScoped(
      Effect.scoped(Effect.andThen(pairNode(net, "primary", options), Effect.never)).pipe(
        Effect.provide(net.layer(primaryHost)),
      ),
    )
    yield* advance(200)
    return { secondary: yield* Deferred.await(secondary), primary }
  })
