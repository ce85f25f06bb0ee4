/**
 * The relink grace: a secondary whose link ended waits for its primary to link again before
 * it takes over (the end may be a starved node's, the primary alive), and meanwhile probes
 * the primary's address to tell a live primary from a dead one.
 */
import { randomBytes } from "node:crypto"
import { Machine } from "@understudy/machine"
import { Address } from "@understudy/transport"
import { Duration, Effect, Metric, Option, Result, Stream } from "effect"
import type * as ClusterRole from "../../ClusterRole.ts"
import * as Metrics from "../../Metrics.ts"
import * as Packet from "../../Packet.ts"
import { addressParameter } from "../association-support.ts"
import type { NodeContext } from "./context.ts"
import { runRole } from "./role.ts"

/**
 * What `probePartner` sends from `host`: an SCTP INIT for the partner's endpoint with `tag`
 * (never 0) as its Initiate Tag. A live endpoint answers an INIT from an unknown address with
 * an INIT ACK (a listening one) or an ABORT, both carrying `tag`, and keeps no state for it
 * (RFC 9260 §5.1: the state travels in the cookie, which the probe never echoes). The INIT
 * lists `host`: a loopback source that lists nothing is answered at the host's first other
 * address (`Endpoint`'s loopback alias, for usrsctp), which the probe socket never hears.
 */
const probeInit = (tag: number, port: number, host: string): Uint8Array =>
  Packet.encode({
    // A port no association of the partner's has with this host (an ephemeral one).
    sourcePort: 49_152 + (tag % 16_384),
    destinationPort: port,
    verificationTag: 0,
    chunks: [
      {
        _tag: "Init",
        initiateTag: tag,
        advertisedReceiverWindowCredit: 65_536,
        outboundStreams: 1,
        inboundStreams: 1,
        initialTsn: tag,
        parameters: [addressParameter(host)].filter((parameter) => parameter !== undefined),
      },
    ],
  })

/** Whether `bytes` is a live SCTP stack's answer to the probe INIT with `tag` (see `probeInit`). */
const answersProbe = (bytes: Uint8Array, tag: number): boolean => {
  const decoded = Packet.decode(bytes)
  if (Result.isFailure(decoded)) return false
  const first = decoded.success.chunks[0]
  return (
    decoded.success.verificationTag >>> 0 === tag &&
    (first?._tag === "InitAck" || (first?._tag === "Abort" && !first.reflected))
  )
}

/** How often `probePartner` sends its INIT. */
const probeEveryMs = 50

/**
 * Secondary, waiting the relink grace: whether its primary is alive. The primary's
 * address (the other one, same UDP port) is sent an SCTP INIT every 50 ms (`probeInit`)
 * from a socket of this node's that hears ICMP port unreachable. An INIT ACK (or ABORT)
 * with the probe's tag proves a live SCTP stack there: stepped as `PartnerAlive`, it
 * starts the grace again. A port unreachable means the process is gone: stepped as
 * `PartnerClosed`, the takeover begins at once. Silence — a stopped process, a host
 * crashed or cut off — leaves the grace to decide. Ends with the grace.
 */
export const probePartner = (node: NodeContext): Effect.Effect<void> =>
  Effect.gen(function* () {
    const { options } = node
    const host = options.addresses.find((address) => address !== options.bind.host)
    if (host === undefined) return
    const to = Address.udp(host, options.bind.port)
    const socket = yield* node.datagram.bind(Address.udp(options.bind.host, 0), {
      reportUnreachable: true,
    })
    if (socket.unreachable === undefined) return
    const tag = randomBytes(4).readUInt32BE(0) || 1
    const init = probeInit(tag, options.port, options.bind.host)
    const waiting = () => node.roleState.awaitingRelink !== undefined
    // Each loop ends with the grace (bounded by it, or by the answers that restart it).
    yield* Effect.forkScoped(
      Effect.ignore(socket.send(to, init)).pipe(
        Effect.andThen(Effect.sleep(Duration.millis(probeEveryMs))),
        Effect.repeat({ while: waiting }),
      ),
    )
    yield* Effect.forkScoped(
      Stream.runForEachWhile(socket.messages, (received) =>
        !waiting()
          ? Effect.succeed(false)
          : answersProbe(received.bytes, tag)
            ? Effect.as(
                Effect.flatMap(node.now, (nowMs) =>
                  runRole(node, Machine.command({ _tag: "PartnerAlive" }, nowMs)),
                ),
                true,
              )
            : Effect.succeed(true),
      ),
    )
    const graceEnded = Effect.sleep(Duration.millis(probeEveryMs)).pipe(
      Effect.repeat({ while: waiting }),
      Effect.as(Option.none<Address.Udp>()),
    )
    const closed = yield* Stream.runHead(socket.unreachable).pipe(Effect.raceFirst(graceEnded))
    if (Option.isSome(closed)) {
      yield* endGrace(node, (nowMs) => Machine.command({ _tag: "PartnerClosed" }, nowMs))
    }
  }).pipe(Effect.scoped, Effect.ignore)

/**
 * The role's one timer, the relink grace, ended with no link: the failure noticed at
 * the link's end (`linkEnd`), then the failover as a whole (the fence's wait, the
 * adoption) in one span.
 */
export function onRoleTimer(node: NodeContext, timer: string): Effect.Effect<void> {
  return endGrace(node, (nowMs) => Machine.timerFired(timer, nowMs))
}

/** The relink grace ends with `input` (its timer, or `PartnerClosed`): see `onRoleTimer`. */
function endGrace(
  node: NodeContext,
  input: (nowMs: number) => Machine.Input<ClusterRole.Message, ClusterRole.Command>,
): Effect.Effect<void> {
  return Effect.gen(function* () {
    if (node.roleState.awaitingRelink === undefined) return
    const end = node.linkEnd
    node.linkEnd = undefined
    const fired = Effect.flatMap(node.now, (nowMs) => runRole(node, input(nowMs)))
    if (end === undefined || node.roleState.role !== "secondary" || node.roleState.linked) {
      return yield* Effect.asVoid(fired)
    }
    yield* Metric.update(Metrics.failoverDetectionMs, end.detectionMs)
    yield* fired.pipe(
      Effect.withSpan("multihome.failover", {
        attributes: {
          "understudy.node": node.nodeId,
          "understudy.trigger": "link",
          "understudy.link_closed": end.reason,
          "understudy.detection_ms": end.detectionMs,
        },
      }),
    )
  })
}
