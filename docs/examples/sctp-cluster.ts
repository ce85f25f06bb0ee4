/**
 * docs/multihome.md, "Two nodes, one endpoint": the echo service of a two-node cluster
 * (primary 127.0.0.2, secondary 127.0.0.3, in one process over real UDP and TCP on
 * loopback) and an SCTP client, ours, connected to the primary. Half the messages go
 * through the primary; it stops without a word; the other half come back from the
 * secondary, each exactly once, on an association that never noticed more than a path.
 */
import * as dgram from "node:dgram"
import * as net from "node:net"
import { Cluster, Endpoint, type Replication } from "@understudy/multihome"
import { Address, ClusterKey, NodeDatagram, NodeTransport } from "@understudy/transport"
import { Effect, Exit, Fiber, Layer, Scope, Stream } from "effect"

const layer = Layer.mergeAll(NodeDatagram.layer, NodeTransport.layer)

// Both nodes share one cluster key: it authenticates their link (in production, read it
// from a 0600 file with ClusterKey.readFile).
const clusterKey = ClusterKey.generate()

/** A UDP socket bound to `port` on `host` (0: the OS picks), or undefined if it is taken. */
const bindUdp = (host: string, port: number) =>
  new Promise<dgram.Socket | undefined>((resolve) => {
    const socket = dgram.createSocket("udp4")
    socket.once("error", () => resolve(undefined))
    socket.bind(port, host, () => resolve(socket))
  })
const close = (socket: dgram.Socket | undefined) =>
  new Promise<void>((resolve) => (socket === undefined ? resolve() : socket.close(resolve)))

/** A UDP port free on both node addresses, and a TCP port for the intra-cluster link. */
const freePorts = Effect.promise(async () => {
  let udp: number | undefined
  // The OS picks a port on the primary's address; it must be free on the secondary's too.
  for (let tries = 0; udp === undefined && tries < 20; tries++) {
    const primary = await bindUdp("127.0.0.2", 0)
    const port = primary?.address().port
    const secondary = port === undefined ? undefined : await bindUdp("127.0.0.3", port)
    if (secondary !== undefined) udp = port
    await Promise.all([close(primary), close(secondary)])
  }
  if (udp === undefined) throw new Error("no UDP port free on both 127.0.0.2 and 127.0.0.3")
  const tcp = await new Promise<number>((resolve) => {
    const server = net.createServer()
    server.listen(0, "127.0.0.3", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
  return { udp, tcp }
})

const node = (role: Cluster.Role, ports: { readonly udp: number; readonly tcp: number }) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const running = yield* Cluster.make({
      role,
      bind: Address.udp(role === "primary" ? "127.0.0.2" : "127.0.0.3", ports.udp),
      port: 7,
      addresses: ["127.0.0.2", "127.0.0.3"],
      link: Address.tcp("127.0.0.3", ports.tcp),
      policy: { _tag: "EveryUpdate" } satisfies Replication.Policy,
      service: Cluster.services.echo,
      clusterKey,
      // Quick timers for the example; RFC 9260's defaults are the library's defaults.
      config: {
        rtoInitial: "300 millis",
        rtoMin: "100 millis",
        rtoMax: "500 millis",
        pathMaxRetrans: 2,
      },
    }).pipe(Effect.provide(layer), Scope.provide(scope))
    return { running, scope }
  })

export const program = Effect.scoped(
  Effect.gen(function* () {
    const ports = yield* freePorts
    const secondary = yield* node("secondary", ports)
    const primary = yield* node("primary", ports)

    const client = yield* Endpoint.make({
      bind: Address.udp("127.0.0.1", 0),
      port: 5000,
      config: {
        rtoInitial: "300 millis",
        rtoMin: "100 millis",
        rtoMax: "500 millis",
        pathMaxRetrans: 2,
      },
    }).pipe(Effect.provide(layer))
    const association = yield* client.connect({ host: "127.0.0.2", udpPort: ports.udp, port: 7 })
    const echoes = yield* association.messages.pipe(
      Stream.take(20),
      Stream.runCollect,
      Effect.forkScoped,
    )

    const text = (index: number) => new TextEncoder().encode(`message ${index}`)
    for (let index = 0; index < 10; index++) yield* association.send(0, 0, text(index))
    yield* Effect.sleep("300 millis")
    // The primary stops: its sockets close, nothing is said to the client.
    yield* Scope.close(primary.scope, Exit.void)
    for (let index = 10; index < 20; index++) yield* association.send(0, 0, text(index))

    const received = yield* Fiber.join(echoes).pipe(Effect.timeout("20 seconds"))
    const status = yield* association.status
    const secondaryStatus = yield* secondary.running.status
    yield* Scope.close(secondary.scope, Exit.void)
    return {
      echoed: received.map((message) => new TextDecoder().decode(message.data)),
      clientPaths: status.paths.map((path) => path.host).sort(),
      clientState: status.state,
      secondaryRole: secondaryStatus.role,
    }
  }),
)
