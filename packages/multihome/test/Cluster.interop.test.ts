/**
 * The cluster against a real SCTP stack we did not write: usrsctp's `client` talks to the
 * echo service of a primary on 127.0.0.2 and a secondary on 127.0.0.3 (both nodes in this
 * process, real UDP and TCP on loopback). The primary stops without a word (its scope
 * closes: sockets gone, no ABORT, as a killed process); the client must see only a path
 * change and every line echoed once. SIGKILL of real node processes is in apps/sctp-cluster.
 */
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Ports, Usrsctp } from "@understudy/testkit"
import { Address, NodeDatagram, NodeTransport } from "@understudy/transport"
import { Duration, Effect, Exit, Layer, Scope } from "effect"
import * as Cluster from "../src/Cluster.ts"
import * as Replication from "../src/Replication.ts"

afterEach(() => Usrsctp.killAll())

const layer = Layer.mergeAll(NodeDatagram.layer, NodeTransport.layer)

/** usrsctp's timers shortened through the tune shim, so its failover takes about a second. */
const fastPeer = {
  rto_initial_default: 200,
  rto_min_default: 100,
  rto_max_default: 400,
  path_rtx_max_default: 2,
  heartbeat_interval_default: 500,
} as const

const startNode = (
  role: Cluster.Role,
  policyText: string,
  ports: { readonly udp: number; readonly link: number },
) =>
  Effect.gen(function* () {
    const policy = Replication.parsePolicy(policyText)
    if (policy instanceof Replication.PolicyError) return yield* Effect.die(policy)
    const scope = yield* Scope.make()
    const node = yield* Cluster.make({
      role,
      bind: Address.udp(role === "primary" ? "127.0.0.2" : "127.0.0.3", ports.udp),
      port: 7,
      addresses: ["127.0.0.2", "127.0.0.3"],
      link: Address.tcp("127.0.0.3", ports.link),
      policy,
      config: { rtoInitialMs: 300, rtoMinMs: 100, rtoMaxMs: 1_000, heartbeatIntervalMs: 500 },
    }).pipe(Effect.provide(layer), Scope.provide(scope))
    return { node, scope }
  })

const waitUntil = (predicate: () => boolean, limitMs: number) =>
  Effect.gen(function* () {
    for (let waited = 0; waited < limitMs && !predicate(); waited += 50) {
      yield* Effect.sleep(Duration.millis(50))
    }
    return predicate()
  })

const echoedLines = (output: string) =>
  output
    .split("\n")
    .map((line) => /^line (\d+)$/.exec(line.trim()))
    .filter((match) => match !== null)
    .map((match) => Number(match[1]))

describe("cluster interop with usrsctp", () => {
  for (const policy of ["every-update", "on-impending-failure"] as const) {
    it.live(
      `${policy}: the client keeps its association through the primary's death`,
      () =>
        Effect.gen(function* () {
          const udp = yield* Effect.promise(() => Usrsctp.freeEncapsulationPort())
          const link = yield* Effect.promise(() => Ports.freeTcpPort())
          const secondary = yield* startNode("secondary", policy, { udp, link })
          const primary = yield* startNode("primary", policy, { udp, link })
          const localEncapsPort = yield* Effect.promise(() => Usrsctp.freeEncapsulationPort())
          const client = yield* Effect.promise(() =>
            Usrsctp.startClient({
              host: "127.0.0.2",
              port: 7,
              localEncapsPort,
              remoteEncapsPort: udp,
              tune: fastPeer,
            }),
          )
          yield* Effect.promise(() => client.waitFor(/COMM_UP|Communication up/i, 10_000))
          const total = 40
          for (let index = 0; index < total / 2; index++) client.write(`line ${index}\n`)
          const half = yield* waitUntil(
            () => echoedLines(client.stdout()).length >= total / 2,
            10_000,
          )
          expect(half).toBe(true)
          // Both addresses confirmed by the peer before the failure.
          yield* Effect.sleep(Duration.millis(1_500))
          if (policy === "on-impending-failure") yield* primary.node.impendingFailure
          yield* Scope.close(primary.scope, Exit.void)
          for (let index = total / 2; index < total; index++) client.write(`line ${index}\n`)
          const all = yield* waitUntil(() => echoedLines(client.stdout()).length >= total, 20_000)
          const echoed = echoedLines(client.stdout())
          if (!all)
            console.log(
              "CLIENT OUTPUT",
              client.output(),
              JSON.stringify(yield* secondary.node.status),
            )
          expect(all).toBe(true)
          expect(echoed).toEqual(Array.from({ length: total }, (_, index) => index))
          const status = yield* secondary.node.status
          expect(status.role).toBe("active-secondary")
          expect(status.associations).toHaveLength(1)
          const output = client.output()
          expect(output).not.toMatch(/COMM_LOST|ABORT|SHUTDOWN_COMP/i)
          yield* Scope.close(secondary.scope, Exit.void)
        }),
      60_000,
    )
  }
})
