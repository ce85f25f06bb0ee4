/**
 * Address takeover (`Options.failover` `takeover` / `both`): a node that took over binds the
 * old serving node's address (same UDP port), claimed for this host first across hosts, and
 * takes in what the peer still sends there; it gives it back when a standby links up.
 */
import { Address, type Datagram } from "@understudy/transport"
import { Duration, Effect, Exit, Scope, Stream } from "effect"
import type { NodeContext } from "./context.ts"
import { takesAddress } from "./failover.ts"
import { type AddressTakeover, causeText } from "./models.ts"

const addressTakeoverFailed = (
  node: NodeContext,
  taken: { host: string; state: AddressTakeover["state"] },
) =>
  Effect.fnUntraced(function* (detail: string) {
    taken.state = "failed"
    yield* node.logged(Effect.logWarning(`address takeover of ${taken.host} failed: ${detail}`))
    yield* node.publish({ _tag: "AddressTakeoverFailed", host: taken.host, detail })
  })

/**
 * Claims the other node's address for this host (across hosts) and tries once to bind it
 * (same UDP port). A takeover does this before its first packet leaves: the peer answers
 * that packet (the HEARTBEATs, the SACK the dead node owed) with the DATA its bundling
 * held back, sent to its primary address, the dead node's; bound only after, that DATA
 * was lost and the peer resent it at its T3-rtx (1 s with usrsctp's defaults). Nothing is
 * read from the socket until the copies are adopted ({@link takeAddress}): what arrives
 * meanwhile waits in its buffer.
 */
export const claimAddress = Effect.fnUntraced(function* (node: NodeContext) {
  const { options } = node
  const host = options.addresses.find((address) => address !== options.bind.host)
  if (!takesAddress(node.failover) || host === undefined || node.addressTakeover !== undefined)
    return
  const taken = {
    host,
    state: "waiting" as AddressTakeover["state"],
    packets: 0,
    scope: yield* Scope.fork(node.nodeScope),
    socket: undefined as Datagram.Endpoint | undefined,
  }
  node.addressTakeover = taken
  if (options.addressClaim !== undefined) {
    const claimed = yield* Effect.exit(options.addressClaim.claim(host))
    if (Exit.isFailure(claimed))
      return yield* addressTakeoverFailed(node, taken)(causeText(claimed.cause))
  }
  const bound = yield* Effect.exit(
    node.datagram.bind(Address.udp(host, options.bind.port)).pipe(Scope.provide(taken.scope)),
  )
  if (Exit.isSuccess(bound)) taken.socket = bound.value
})

/**
 * Binds the other node's address once its socket is gone, unless {@link claimAddress}
 * already did, and hands every datagram the peer still sends there to the endpoint, as
 * the secondary's forwarded packets are. Replies leave from this node's own address: a
 * peer takes an association's chunks from any of its addresses.
 */
export const takeAddress = Effect.fnUntraced(function* (node: NodeContext) {
  yield* claimAddress(node)
  const taken = node.addressTakeover
  if (taken === undefined || taken.state !== "waiting") return
  const { addressWaitMs } = node.timings
  const deadlineMs = (yield* node.now) + addressWaitMs
  while (taken.socket === undefined) {
    if (taken.state !== "waiting" || node.closing) return
    yield* Effect.sleep(Duration.millis(50))
    const bound = yield* Effect.exit(
      node.datagram
        .bind(Address.udp(taken.host, node.options.bind.port))
        .pipe(Scope.provide(taken.scope)),
    )
    if (Exit.isSuccess(bound)) taken.socket = bound.value
    else if ((yield* node.now) >= deadlineMs)
      return yield* addressTakeoverFailed(
        node,
        taken,
      )(`still not free after ${addressWaitMs} ms: ${causeText(bound.cause)}`)
  }
  if (taken.state !== "waiting" || node.closing) return
  taken.state = "bound"
  yield* node.logged(Effect.logInfo(`took over the address ${taken.host}`))
  yield* node.publish({ _tag: "AddressTaken", host: taken.host, atMs: yield* node.now })
  yield* Stream.runForEach(taken.socket.messages, (received) => {
    taken.packets++
    return node.endpoint.inject(
      { host: received.from.host, udpPort: received.from.port },
      received.bytes,
    )
  })
})

/** Gives the address back: the standby that linked up may be the node it belongs to. */
export const releaseAddress = Effect.fnUntraced(function* (node: NodeContext) {
  const taken = node.addressTakeover
  if (taken === undefined || taken.state === "released" || taken.state === "failed") return
  taken.state = "released"
  yield* Scope.close(taken.scope, Exit.void)
  if (node.options.addressClaim !== undefined) yield* node.options.addressClaim.release(taken.host)
  yield* node.logged(Effect.logInfo(`gave the address ${taken.host} back`))
  yield* node.publish({ _tag: "AddressReleased", host: taken.host, atMs: yield* node.now })
})
