/**
 * The cluster against a real SCTP stack we did not write: usrsctp's `client` talks to the
 * echo service of a primary on 127.0.0.2 and a secondary on 127.0.0.3 (both nodes in this
 * process, real UDP and TCP on loopback). The primary stops without a word (its scope
 * closes: sockets gone, no ABORT, as a killed process); the client must see only a path
 * change and every line echoed once. SIGKILL of real node processes is in apps/sctp-cluster.
 */
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Eventually, Ports, Usrsctp } from "@understudy/testkit"
import { Address, ClusterKey, NodeDatagram, NodeTransport } from "@understudy/transport"
import { Duration, Effect, Exit, Layer, Scope } from "effect"
import * as Cluster from "../src/Cluster.ts"
import * as Replication from "../src/Replication.ts"

// The link listens on 127.0.0.3 (a rejoining node's on 127.0.0.2): its port is checked free
// there, where another process's cluster may hold it, not on 127.0.0.1.

afterEach(() => Usrsctp.killAll())

const layer = Layer.mergeAll(NodeDatagram.layer, NodeTransport.layer)

/** The two nodes' shared key: the link is authenticated, as by default. */
const clusterKey = ClusterKey.generate()

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
  service: Cluster.Service = Cluster.services.echo,
  /** Another node's part: its own address, its link, its standby's link, its failover. */
  part: {
    readonly host?: string
    readonly link?: Address.StreamAddress
    readonly standbyLink?: Address.StreamAddress
    readonly failover?: Cluster.Failover
  } = {},
) =>
  Effect.gen(function* () {
    const policy = Replication.parsePolicy(policyText)
    if (policy instanceof Replication.PolicyError) return yield* Effect.die(policy)
    const scope = yield* Scope.make()
    const node = yield* Cluster.make({
      role,
      bind: Address.udp(part.host ?? (role === "primary" ? "127.0.0.2" : "127.0.0.3"), ports.udp),
      port: 7,
      addresses: ["127.0.0.2", "127.0.0.3"],
      link: part.link ?? Address.tcp("127.0.0.3", ports.link),
      ...(part.standbyLink !== undefined ? { standbyLink: part.standbyLink } : {}),
      ...(part.failover !== undefined ? { failover: part.failover } : {}),
      policy,
      service,
      config: { rtoInitial: 300, rtoMin: 100, rtoMax: 1_000, heartbeatInterval: 500 },
      clusterKey,
    }).pipe(Effect.provide(layer), Scope.provide(scope))
    return { node, scope }
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
          const link = yield* Effect.promise(() => Ports.freeTcpPort("127.0.0.3"))
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
          yield* Eventually.effect(
            "the first half of the lines echoed",
            () => echoedLines(client.stdout()).length >= total / 2,
            { within: 10_000, every: 50 },
          )
          // Both addresses confirmed by the peer before the failure.
          yield* Effect.sleep(Duration.millis(1_500))
          if (policy === "on-impending-failure") yield* primary.node.impendingFailure
          yield* Scope.close(primary.scope, Exit.void)
          for (let index = total / 2; index < total; index++) client.write(`line ${index}\n`)
          const all = yield* Effect.exit(
            Eventually.effect(
              "every line echoed",
              () => echoedLines(client.stdout()).length >= total,
              { within: 20_000, every: 50 },
            ),
          )
          const echoed = echoedLines(client.stdout())
          // The peer's output and the survivor's status in the failure message (CI shows it).
          const why = `client: ${client.output().slice(-4_000)}\nsecondary: ${JSON.stringify(yield* secondary.node.status)}`
          expect(Exit.isSuccess(all), why).toBe(true)
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

  // usrsctp's default timers would keep sending new DATA to the dead 127.0.0.2 for half a
  // minute (RTO 1 s, doubling): with `takeover` the secondary binds that address once the
  // primary's socket is gone and takes in what arrives there, so the client never sees a
  // path fail. Then the old primary's address is given back to a node that rejoins there.
  it.live(
    "takeover: the secondary binds the dead primary's address; the client's new DATA there is echoed; the address is given back to the node that rejoins on it",
    () =>
      Effect.gen(function* () {
        const [udp, localEncapsPort] = yield* Effect.promise(() =>
          Usrsctp.freeEncapsulationPorts(2),
        )
        const link = yield* Effect.promise(() => Ports.freeTcpPort("127.0.0.3"))
        const rejoinLink = Address.tcp(
          "127.0.0.2",
          yield* Effect.promise(() => Ports.freeTcpPort("127.0.0.2")),
        )
        const ports = { udp: udp!, link }
        const secondary = yield* startNode("secondary", "every-update", ports, undefined, {
          failover: "takeover",
          standbyLink: rejoinLink,
        })
        const primary = yield* startNode("primary", "every-update", ports)
        const client = yield* Effect.promise(() =>
          Usrsctp.startClient({
            host: "127.0.0.2",
            port: 7,
            localEncapsPort: localEncapsPort!,
            remoteEncapsPort: udp!,
          }),
        )
        // Its primary address is all the client needs here: it is never asked to move.
        yield* Effect.promise(() => client.waitFor(/SCTP_COMM_UP/, 20_000))
        const total = 60
        const write = (from: number, to: number) => {
          for (let index = from; index < to; index++) client.write(`line ${index}\n`)
        }
        // Its exit, so that a failure can show the client's output.
        const echoedUpTo = (count: number) =>
          Effect.map(
            Effect.exit(
              Eventually.effect(
                `${count} lines echoed`,
                () => echoedLines(client.stdout()).length >= count,
                { within: 20_000, every: 50 },
              ),
            ),
            Exit.isSuccess,
          )
        write(0, 20)
        expect(yield* echoedUpTo(20)).toBe(true)
        yield* Scope.close(primary.scope, Exit.void)
        yield* Eventually.effect(
          "the secondary bound the dead primary's address",
          Effect.map(secondary.node.status, (status) => status.addressTakeover?.state === "bound"),
          { within: 20_000, every: 50 },
        )
        write(20, 40)
        const why = Effect.map(
          secondary.node.status,
          (status) =>
            `client: ${client.output().slice(-4_000)}\nsecondary: ${JSON.stringify(status)}`,
        )
        const echoed = yield* echoedUpTo(40)
        expect(echoed, yield* why).toBe(true)
        const taken = (yield* secondary.node.status).addressTakeover
        expect(taken?.host).toBe("127.0.0.2")
        // The client's new DATA went on to its primary address, and arrived.
        expect(taken?.packets).toBeGreaterThan(0)

        // The old primary rejoins on its address as the new secondary: its bind waits until
        // the serving node, linked to it, gave the address back.
        const rejoined = yield* startNode("secondary", "every-update", ports, undefined, {
          host: "127.0.0.2",
          link: rejoinLink,
        })
        yield* Eventually.effect(
          "the rejoined node linked",
          Effect.map(rejoined.node.status, (status) => status.link === "up"),
          { within: 20_000, every: 50 },
        )
        expect((yield* secondary.node.status).addressTakeover?.state).toBe("released")
        write(40, total)
        const echoedAll = yield* echoedUpTo(total)
        expect(echoedAll, yield* why).toBe(true)
        expect(echoedLines(client.stdout())).toEqual(Array.from({ length: total }, (_, i) => i))
        expect(client.output()).not.toMatch(/COMM_LOST|ABORT|SHUTDOWN_COMP|UNREACHABLE/i)
        expect((yield* rejoined.node.status).role).toBe("secondary")
        yield* Scope.close(rejoined.scope, Exit.void)
        yield* Scope.close(secondary.scope, Exit.void)
      }),
    60_000,
  )

  // tsctp lists no address in its INIT and sends from 127.0.0.1, where usrsctp takes no
  // answers: the primary answers at this host's address, and the secondary must learn that
  // table from it, or its answers go nowhere once it takes over.
  it.live(
    "every-update: tsctp streams into the discard service; every message arrives once across the primary's death",
    () =>
      Effect.gen(function* () {
        const [udp, localEncapsPort] = yield* Effect.promise(() =>
          Usrsctp.freeEncapsulationPorts(2),
        )
        const link = yield* Effect.promise(() => Ports.freeTcpPort("127.0.0.3"))
        const ports = { udp: udp!, link }
        const secondary = yield* startNode(
          "secondary",
          "every-update",
          ports,
          Cluster.services.discard,
        )
        const primary = yield* startNode("primary", "every-update", ports, Cluster.services.discard)
        const total = 20_000
        const sender = yield* Effect.promise(() =>
          Usrsctp.startTsctp({
            role: "sender",
            host: "127.0.0.2",
            port: 7,
            localEncapsPort: localEncapsPort!,
            remoteEncapsPort: udp!,
            messageLength: 1_024,
            messages: total,
            nodebug: true,
            tune: fastPeer,
          }),
        )
        yield* Eventually.effect(
          "a quarter of the messages on the primary",
          Effect.map(primary.node.received, (received) => received.messages >= total / 4),
          { within: 20_000, every: 50 },
        )
        yield* Scope.close(primary.scope, Exit.void)
        const done = yield* Effect.exit(
          Eventually.effect(
            "every message received by one node or the other",
            Effect.zipWith(
              primary.node.received,
              secondary.node.received,
              (one, other) => one.messages + other.messages >= total,
            ),
            { within: 30_000, every: 50 },
          ),
        )
        const onPrimary = yield* primary.node.received
        const onSecondary = yield* secondary.node.received
        // The peer's output and the survivor's status in the failure message (CI shows it).
        const why = `tsctp: ${sender.output().slice(-4_000)}\nsecondary: ${JSON.stringify(yield* secondary.node.status)}`
        expect(Exit.isSuccess(done), why).toBe(true)
        // Each message delivered once on exactly one node.
        expect(onPrimary.messages + onSecondary.messages).toBe(total)
        expect(onPrimary.bytes + onSecondary.bytes).toBe(total * 1_024)
        expect(onSecondary.messages).toBeGreaterThan(0)
        expect((yield* secondary.node.status).role).toBe("active-secondary")
        const exited = yield* Effect.promise(() => sender.exited)
        expect(exited.code).toBe(0)
        expect(sender.output()).not.toMatch(/abort/i)
        yield* Scope.close(secondary.scope, Exit.void)
      }),
    60_000,
  )
})
