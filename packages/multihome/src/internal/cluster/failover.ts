/** How a takeover moves the peer's traffic to the node (`Options.failover`). */
import type * as Association from "../../Association.ts"
import type { Failover, Options } from "./models.ts"

/** Whether a takeover asks the peer, in an ASCONF, to make this node's address primary. */
const asksPeer = (failover: Failover): boolean => failover === "asconf" || failover === "both"

/** Whether a takeover binds the old serving node's address. */
export const takesAddress = (failover: Failover): boolean =>
  failover === "takeover" || failover === "both"

/** The takeover's request to the peer for this node's options. */
export const askPeerForPrimary = (options: Options): Association.TakeOverOptions => {
  const failover = options.failover ?? "asconf"
  if (!asksPeer(failover)) return {}
  // `both`: the request waits until what the peer sent into the takeover's gap is filled. A
  // peer (usrsctp) fast-retransmits only on SACKs for what it sent to the same address: moved
  // at once, it would resend the chunk lost on the dead node's address only at its T3-rtx.
  return takesAddress(failover)
    ? { setPrimary: options.bind.host, setPrimaryOnceFilled: true }
    : { setPrimary: options.bind.host }
}
