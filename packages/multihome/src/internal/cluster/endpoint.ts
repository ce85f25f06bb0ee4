/**
 * The node's SCTP endpoint as the cluster runs it: the service answers inside each update,
 * the primary's updates are replicated before their outputs leave (`shipping.ts`), packets
 * for no association of the secondary's are intercepted (answered from a copy, forwarded to
 * the primary, or the cue to take over), nothing is sent without the role's proof, and while
 * the node hands over what reaches its socket goes to the secondary instead.
 */
import { Datagram } from "@understudy/transport"
import { Clock, Duration, Effect, PubSub, Schedule, Scope, Stream } from "effect"
import * as ClusterRole from "../../ClusterRole.ts"
import * as Endpoint from "../../Endpoint.ts"
import type { NodeContext } from "./context.ts"
import { divertPacket, holdForward } from "./handover.ts"
import { ClusterError } from "./models.ts"
import { stepRole } from "./role.ts"
import { beforeOutputs } from "./shipping.ts"

/** The service, counting what it was given. */
const handler = (node: NodeContext) => (association: number, message: Endpoint.Message) => {
  node.received.messages++
  node.received.bytes += message.data.length
  return node.service(message, association)
}

/** Packets that reach the secondary for no association of its own (see the module doc). */
const intercept = (node: NodeContext, packet: Endpoint.Intercepted): Effect.Effect<boolean> =>
  Effect.gen(function* () {
    const copy = node.replicas.byTag(packet.packet.verificationTag)
    const chunks = packet.packet.chunks
    const answerable = ClusterRole.heartbeatsForCopy(copy, chunks)
    switch (ClusterRole.intercept(node.roleState, { heartbeatsForCopy: answerable })) {
      case "pass":
        return false
      case "drop":
        return true
      case "answer": {
        // A peer on this machine may send from a loopback address it never listed
        // (usrsctp does): answer where the endpoint's alias table says it listens.
        yield* node.endpoint.addAliases(Endpoint.aliasesOf(copy!))
        for (const answer of ClusterRole.heartbeatAnswers(copy!, node.options.port, chunks)) {
          yield* node.endpoint.transmit(packet.from, answer)
        }
        return true
      }
      case "forward":
        // The primary is handing over: this node serves what it holds once it took over.
        if (node.pendingHandOver !== undefined) {
          holdForward(node, { from: packet.from, bytes: packet.bytes })
          return true
        }
        if (node.link !== undefined) {
          yield* Effect.ignore(
            node.link.send({
              _tag: "Forward",
              host: packet.from.host,
              udpPort: packet.from.udpPort,
              bytes: packet.bytes,
            }),
          )
        }
        return true
      case "take-over":
        // Nobody to forward to: the primary is gone. Take over, then let the endpoint
        // handle the packet against the adopted association.
        yield* stepRole(node, { _tag: "Stray" }).pipe(
          Effect.withSpan("multihome.failover", {
            attributes: { "understudy.node": node.nodeId, "understudy.trigger": "stray" },
          }),
        )
        return false
    }
  })

/**
 * Asked before every datagram: the secondary's HEARTBEAT ACKs need no role; a node that
 * serves the associations needs the fence's proof.
 */
const mayTransmit = (node: NodeContext): Effect.Effect<boolean> =>
  Effect.suspend(() =>
    // A closing node falls silent first: its finalizer lets the updates waiting for the
    // secondary's ack go (see `node.ts`), and their SACKs must not tell the peer that data
    // the secondary never got is delivered.
    node.closing
      ? Effect.succeed(false)
      : node.fence === undefined || node.roleState.role === "secondary"
        ? Effect.succeed(true)
        : node.fence.holds,
  )

/**
 * The endpoint's socket, seen through the handover: while this node hands over, what
 * reaches it goes to the secondary instead of the endpoint (see `beginHandOver`).
 */
const divertingDatagram = (node: NodeContext) =>
  Datagram.Datagram.of({
    bind: (address) =>
      Effect.map(node.datagram.bind(address), (socket) => ({
        address: socket.address,
        send: socket.send,
        messages: Stream.filter(socket.messages, (received) => {
          if (node.handOverAfter === undefined) return true
          divertPacket(node, {
            from: { host: received.from.host, udpPort: received.from.port },
            bytes: received.bytes,
          })
          return false
        }),
      })),
  })

/**
 * Makes the endpoint (`node.endpoint`, in `node.endpointScope`) and returns the associations
 * it accepts. A node whose address is held by one that took it over (`takeover`) retries the
 * bind for `addressWait`, once it has a link listener: that node gives it back when its link
 * to this one is up.
 */
export const start = (
  node: NodeContext,
  config: Endpoint.AssociationOptions,
  waitsForAddress: boolean,
) =>
  Effect.gen(function* () {
    const { options } = node
    node.endpointScope = yield* Scope.fork(yield* Effect.scope)
    const bindDeadlineMs = (yield* node.now) + node.timings.addressWaitMs
    const makeEndpoint = Endpoint.make({
      bind: options.bind,
      port: options.port,
      config,
      listen: true,
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
      hooks: { beforeOutputs: (update) => beforeOutputs(node, update) },
      handler: handler(node),
      intercept: (packet) => intercept(node, packet),
      abortOnClose: false,
      mayTransmit: mayTransmit(node),
    }).pipe(
      Scope.provide(node.endpointScope),
      Effect.provideService(Datagram.Datagram, divertingDatagram(node)),
    )
    node.endpoint = yield* makeEndpoint.pipe(
      Effect.retry({
        while: (error) =>
          waitsForAddress &&
          error._tag === "ListenError" &&
          error.reason === "AddressInUse" &&
          Clock.currentTimeMillis.pipe(Effect.map((nowMs) => nowMs < bindDeadlineMs)),
        schedule: Schedule.spaced(Duration.millis(50)),
      }),
      Effect.mapError((error) => new ClusterError({ detail: error.message })),
    )
    // The service answers every association inside the endpoint's updates, so the cluster
    // takes them from `accept` itself (its bounded backlog would otherwise fill and refuse
    // the 129th), and shows them to whoever listens on `accepted` (a slow one misses some).
    const accepted = yield* PubSub.sliding<Endpoint.AssociationHandle>(1_024)
    yield* Effect.forkIn(
      Stream.runForEach(node.endpoint.accept, (association) =>
        PubSub.publish(accepted, association),
      ),
      node.endpointScope,
    )
    return accepted
  })
