/**
 * One SCTP endpoint served by two nodes: the primary node and the secondary node
 * each bind their own address (e.g. 127.0.0.2 and 127.0.0.3, same UDP and SCTP port), and
 * both addresses are listed in every INIT ACK, so the peer sees one endpoint with two
 * addresses. The primary runs the associations; a synchronisation process (`Replication`)
 * keeps their state on the secondary over an intra-cluster link (a transport connection,
 * authenticated with the cluster key, with keep-alive), or in a `Store` on a third node.
 *
 * While the primary lives, the secondary answers the peer's HEARTBEATs to its address from
 * its copy (the peer confirms the address) and forwards every other packet that reaches
 * it to the primary. When the link closes or times out (the primary died or hung), the
 * secondary takes every association over (`Association.takeOver`): from then on it answers
 * from its own address, and the peer, whose retransmissions move to its alternate address
 * after one RTO, sees only a path change.
 *
 * Services are synchronous (`Service`): the replies to a message are queued in the same
 * update as the message's arrival, so under `every-update` the secondary has the message
 * and its replies before the peer sees the SACK — an echo is never lost or doubled.
 *
 * Without `fence`, the link is the failure detector: a partition between two live nodes
 * (or a primary paused past the keep-alive) would make both active. With it, the role is
 * held in a store (`Fence`): nothing is transmitted without the proof of a live lease.
 *
 * @since 0.1.0
 */

export {
  staleReplicationMetric,
  unprotectedMetric,
  unprotectedUpdatesMetric,
} from "./internal/cluster/metrics.ts"
export {
  type AddressClaim,
  type AddressTakeover,
  type AssociationSummary,
  ClusterError,
  type ClusterEvent,
  type Failover,
  type HandOverReport,
  type Node,
  type Options,
  type Reply,
  type Role,
  type Service,
  type Status,
  services,
  summarise,
} from "./internal/cluster/models.ts"
export { make } from "./internal/cluster/node.ts"
