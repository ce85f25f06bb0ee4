/**
 * Replication of associations from a cluster's primary node to its secondary: the
 * policies, the messages on the intra-cluster link, and
 * the two pure halves — {@link Shipper} on the primary decides what to send after each
 * update of an association, {@link Replicas} on the secondary keeps the copies.
 *
 * Two ways of keeping a copy, both exact because `Association` is deterministic:
 * - `Inputs`: every input the primary stepped (received packet bytes, timer firings, user
 *   commands, with their `nowMs`); the secondary steps its copy with the same inputs and
 *   discards the outputs, so it holds the very state the primary holds.
 * - `Snapshot`: the whole TCB (`Association.snapshot`), tags, TSNs, acknowledgements,
 *   stream sequence numbers, paths and RTO, the unacknowledged outbound queue, the
 *   inbound reassembly queue and the cookie secrets.
 *
 * Policies:
 * - `every-update`: a snapshot when an association is created, then its inputs after every
 *   update; the primary performs an update's outputs (its SACKs, its DATA) only once the
 *   secondary acknowledged it, so whatever the peer saw acknowledged or sent, the secondary
 *   has: nothing is lost whenever the primary dies — while a secondary is linked. With the
 *   link down (the secondary died or hung: its keep-alive timed out) the primary serves on
 *   alone and says so (`Cluster`'s `Unprotected` event, `status.unprotected`, the
 *   `understudy_multihome_unprotected` gauge) until a secondary links up again.
 * - `interval`: a snapshot of every association that changed, every `every` (a
 *   `Duration.Input`, decoded by `Cluster.make`).
 * - `on-event`: a snapshot when an update raises one of the named events.
 * - `on-impending-failure`: one snapshot of everything when the node is told it is about to
 *   fail (SIGTERM, a failing health check), and nothing before.
 * - `state-node`: the snapshot is written to the `Store` (a third node) after every update,
 *   outputs waiting for the write; the secondary reads it from there when it takes over.
 *
 * A copy that may be behind (`interval`, `on-event`) is taken over with `resync` and the
 * {@link reserve} (see `Association.takeOver`). Under those policies the primary still
 * makes one number known before it leaves: the Cumulative TSN Ack of each SACK that
 * acknowledges more than the last (`CumulativeAck`, a few bytes, the SACK waiting for the
 * secondary's ack). The peer frees what a SACK acknowledged and never resends it; without
 * that number a replica could only guess where the peer's retransmissions resume, and a
 * wrong guess loses a message the primary never received.
 *
 * @since 0.1.0
 */

export {
  codec,
  epochOf,
  fromWire,
  type ListenerSecrets,
  type Message,
  toWire,
  type WireInput,
} from "./internal/replication/messages.ts"
export {
  formatPolicy,
  isExact,
  type Policy,
  PolicyError,
  parsePolicy,
} from "./internal/replication/policy.ts"
export { ReplicaError, Replicas } from "./internal/replication/replicas.ts"
export { snapshotProblem } from "./internal/replication/shape.ts"
export { type Plan, reserve, Shipper, type Update } from "./internal/replication/shipper.ts"
export { chooseStored, type Stored } from "./internal/replication/stored.ts"
