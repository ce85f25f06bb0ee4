/**
 * One receiver process of the multihome bench: `bench/throughput.ts` spawns it with
 * `process.execPath`. Either our discard endpoint alone (`--mode single`: `Endpoint.make`
 * with a handler that drops every message) or one node of a two-node cluster running the
 * discard service (`--mode primary|secondary`, replication `--policy`, default
 * `every-update`).
 *
 * Arguments: `--mode single|primary|secondary --host IP --udp-port N (0: the OS picks)
 * --sctp-port N [--addresses IP,IP --link-host IP --link-port N --policy P] [--observe]
 * [--service discard|echo] [--failover asconf|takeover|both|none]` (a node's service, default
 * discard, and how its takeover moves the peer, `Cluster.Options.failover`).
 *
 * It reports on stdout, one JSON object a line, each tagged `t`:
 * - `ready` `{ host, udpPort, sctpPort }`: it listens (a primary: its link to the secondary
 *   is up too, so the first update is already replicated);
 * - `association` `{ id, messages, bytes, seconds, reason }`: an association it accepted
 *   ended; `messages` / `bytes`: what the service was handed; `seconds`: from the first
 *   message handed to the service to the association's end (`closed`: SHUTDOWN COMPLETE or
 *   ABORT), as tsctp's receiver times itself (first receive → end of the association);
 * - `tookOver` `{ atMs, associations }`: a secondary took its replicas over (the link closed);
 * - `cpu` `{ ms }`: on SIGUSR2, the CPU time this process has used so far (user + system);
 * - with `--observe`, the first of each on this node: `heartbeatAckOut` (a HEARTBEAT ACK left
 *   its socket: the peer is confirming this address), `dataIn` (a datagram with a DATA chunk
 *   reached its socket), `sackOut` (a datagram with a SACK chunk left its socket; the SACK's
 *   fields), `sackAfterDataOut` (the same, the first one after `dataIn`), `message` (the
 *   service was handed a message).
 * `atMs` is wall-clock time with sub-millisecond resolution (`performance.timeOrigin +
 * performance.now()`), comparable between processes of one machine.
 *
 * It exits when its stdin closes (the bench process is gone) or on SIGTERM / SIGINT, so it
 * never outlives the bench.
 */
import { Address, ClusterKey, Datagram, NodeDatagram, NodeTransport } from "@understudy/transport"
import { Duration, Effect, Layer, Stream } from "effect"
import * as Cluster from "../src/Cluster.ts"
import * as Endpoint from "../src/Endpoint.ts"
import * as Replication from "../src/Replication.ts"

const argument = (name: string): string | undefined => {
  const index = process.argv.indexOf(`--${name}`)
  return index < 0 ? undefined : process.argv[index + 1]
}

const required = (name: string): string => {
  const value = argument(name)
  if (value === undefined) throw new Error(`receiver: --${name} is required`)
  return value
}

const port = (name: string): number => {
  const value = Number(required(name))
  if (!Number.isInteger(value) || value < 0 || value > 65_535)
    throw new Error(`receiver: --${name} must be a port number`)
  return value
}

const mode = required("mode")
if (mode !== "single" && mode !== "primary" && mode !== "secondary")
  throw new Error(`receiver: unknown --mode ${mode}`)
const host = required("host")
const udpPort = port("udp-port")
const sctpPort = port("sctp-port")
const observe = process.argv.includes("--observe")

const wallMs = (): number => performance.timeOrigin + performance.now()

const emit = (line: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(line)}\n`)
}

// ---- counting, as tsctp's receiver does -----------------------------------------------------

interface Counter {
  messages: number
  bytes: number
  /** performance.now() when the first message was handed to the service. */
  firstMs: number
}

const counters = new Map<number, Counter>()
let firstMessageSeen = false

const count = (associationId: number, data: Uint8Array): void => {
  let counter = counters.get(associationId)
  if (counter === undefined) {
    counter = { messages: 0, bytes: 0, firstMs: performance.now() }
    counters.set(associationId, counter)
  }
  counter.messages++
  counter.bytes += data.length
  if (observe && !firstMessageSeen) {
    firstMessageSeen = true
    emit({ t: "message", atMs: wallMs() })
  }
}

const ended = (associationId: number, reason: string): void => {
  const endMs = performance.now()
  const counter = counters.get(associationId)
  counters.delete(associationId)
  emit({
    t: "association",
    id: associationId,
    messages: counter?.messages ?? 0,
    bytes: counter?.bytes ?? 0,
    seconds: counter === undefined ? 0 : (endMs - counter.firstMs) / 1000,
    reason,
  })
}

// ---- watching the socket (--observe) ----------------------------------------------------------

// RFC 9260 §3.2 chunk types.
const chunkTypeData = 0
const chunkTypeSack = 3
const chunkTypeHeartbeatAck = 5
const commonHeaderBytes = 12

/** Offset of the first chunk of `type` in an SCTP packet, or -1 (bounded by the packet). */
const findChunk = (bytes: Uint8Array, type: number): number => {
  let offset = commonHeaderBytes
  while (offset + 4 <= bytes.length) {
    const length = ((bytes[offset + 2] as number) << 8) | (bytes[offset + 3] as number)
    if (bytes[offset] === type) return offset
    if (length < 4) return -1
    offset += (length + 3) & ~3
  }
  return -1
}

const seen = { dataIn: false, sackOut: false, sackAfterDataOut: false, heartbeatAckOut: false }

const watchIn = (bytes: Uint8Array): void => {
  if (!seen.dataIn && findChunk(bytes, chunkTypeData) >= 0) {
    seen.dataIn = true
    emit({ t: "dataIn", atMs: wallMs() })
  }
}

const sackLine = (t: string, bytes: Uint8Array, offset: number): Record<string, unknown> => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  return {
    t,
    atMs: wallMs(),
    cumulativeTsnAck: view.getUint32(offset + 4),
    advertisedReceiverWindowCredit: view.getUint32(offset + 8),
    gapAckBlocks: view.getUint16(offset + 12),
    duplicateTsns: view.getUint16(offset + 14),
  }
}

const watchOut = (bytes: Uint8Array): void => {
  if (!seen.sackAfterDataOut) {
    const offset = findChunk(bytes, chunkTypeSack)
    if (offset >= 0 && offset + 16 <= bytes.length) {
      if (!seen.sackOut) {
        seen.sackOut = true
        emit(sackLine("sackOut", bytes, offset))
      }
      if (seen.dataIn) {
        seen.sackAfterDataOut = true
        emit(sackLine("sackAfterDataOut", bytes, offset))
      }
    }
  }
  if (!seen.heartbeatAckOut && findChunk(bytes, chunkTypeHeartbeatAck) >= 0) {
    seen.heartbeatAckOut = true
    emit({ t: "heartbeatAckOut", atMs: wallMs() })
  }
}

/** NodeDatagram with every datagram in and out shown to the watchers first. */
const observedDatagram: Layer.Layer<Datagram.Datagram> = Layer.effect(
  Datagram.Datagram,
  Effect.gen(function* () {
    const inner = yield* Datagram.Datagram
    return Datagram.Datagram.of({
      // The options and the endpoint's other members pass through: the Cluster's partner
      // probe needs `reportUnreachable`, or its relink grace runs in full.
      bind: (address, options) =>
        Effect.map(
          inner.bind(address, options),
          (socket): Datagram.Endpoint => ({
            ...socket,
            send: (to, bytes) => {
              watchOut(bytes)
              return socket.send(to, bytes)
            },
            messages: Stream.map(socket.messages, (received) => {
              watchIn(received.bytes)
              return received
            }),
          }),
        ),
    })
  }),
).pipe(Layer.provide(NodeDatagram.layer))

// ---- the endpoint or the node ------------------------------------------------------------------

const discard = (associationId: number, message: Endpoint.Message) => {
  count(associationId, message.data)
  return []
}

const startNode = (role: Cluster.Role) =>
  Effect.gen(function* () {
    const policy = Replication.parsePolicy(argument("policy") ?? "every-update")
    if (policy instanceof Replication.PolicyError) return yield* Effect.die(policy)
    const addresses = required("addresses").split(",")
    const node = yield* Cluster.make({
      role,
      bind: Address.udp(host, udpPort),
      port: sctpPort,
      addresses,
      link: Address.tcp(required("link-host"), port("link-port")),
      policy,
      clusterKey: yield* ClusterKey.readFile(required("cluster-key-file")),
      service: (message, associationId) => {
        count(associationId, message.data)
        return (argument("service") === "echo" ? Cluster.services.echo : Cluster.services.discard)(
          message,
          associationId,
        )
      },
      failover:
        (["asconf", "takeover", "both", "none"] as const).find(
          (failover) => failover === argument("failover"),
        ) ?? "asconf",
    })
    yield* Effect.forkScoped(
      Stream.runForEach(node.events, (event) =>
        Effect.sync(() => {
          if (event._tag === "TookOver")
            emit({ t: "tookOver", atMs: wallMs(), associations: event.associations })
        }),
      ),
    )
    if (role === "primary") {
      // Ready once the secondary has the listener's secrets: bounded wait for the link.
      for (let waitedMs = 0; waitedMs < 10_000; waitedMs += 10) {
        if ((yield* node.status).link === "up") break
        yield* Effect.sleep(Duration.millis(10))
      }
      if ((yield* node.status).link !== "up")
        return yield* Effect.die(new Error("the link to the secondary did not come up in 10 s"))
    }
    return { endpoint: node.endpoint, accepted: node.accepted }
  })

const program = Effect.gen(function* () {
  const { endpoint, accepted } =
    mode === "single"
      ? yield* Effect.map(
          Endpoint.make({
            bind: Address.udp(host, udpPort),
            port: sctpPort,
            listen: true,
            handler: discard,
          }),
          (endpoint) => ({ endpoint, accepted: endpoint.accept }),
        )
      : yield* startNode(mode)
  yield* Effect.forkScoped(
    Stream.runForEach(accepted, (association) =>
      Effect.forkScoped(
        Effect.map(association.closed, (reason) => ended(association.id, reason._tag)),
      ),
    ),
  )
  emit({ t: "ready", host, udpPort: endpoint.address.port, sctpPort })
  return yield* Effect.never
})

const layer = Layer.mergeAll(observe ? observedDatagram : NodeDatagram.layer, NodeTransport.layer)

// The bench asks for this process's CPU time (user and system, every thread: the
// collector's too) before and after a run: a cost that load on the machine barely moves.
process.on("SIGUSR2", () => {
  const usage = process.cpuUsage()
  emit({ t: "cpu", ms: (usage.user + usage.system) / 1000 })
})
const stop = (code: number) => () => process.exit(code)
process.stdin.on("end", stop(0))
process.stdin.on("close", stop(0))
process.stdin.resume()
process.once("SIGTERM", stop(0))
process.once("SIGINT", stop(0))

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(layer))).catch((error: unknown) => {
  emit({ t: "error", message: error instanceof Error ? error.message : String(error) })
  process.exit(1)
})
