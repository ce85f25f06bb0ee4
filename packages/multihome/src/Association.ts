/**
 * One SCTP association (RFC 9260) as a pure deterministic machine on the `@understudy/machine`
 * contract, a peer named by its {@link PeerAddress}: the TCB is a mutable {@link State};
 * {@link step} feeds it one {@link Input} (a received packet, a timer that fired, a user
 * command) and returns a {@link Result}: the same state object, updated in place (the
 * contract's in-place variant, for the per-packet path), and the {@link Output}s (`Send` a
 * packet, `SetTimer` after `afterMs` / `CancelTimer`, `Emit` an event for the user). There
 * is no I/O, no clock and no `Math.random`:
 * time is `nowMs` of each input, randomness (verification tags, initial TSNs, heartbeat
 * nonces, cookie secrets, heartbeat jitter) comes from the OS CSPRNG, or, in simulation, from
 * a seeded PRNG held in the state (see {@link Seed}).
 * Replaying the same inputs into a {@link restore}d {@link snapshot} yields the same
 * state and outputs — the cluster's replication relies on it.
 *
 * Timers are both emitted (`SetTimer` / `CancelTimer`, by name; setting a name again
 * replaces its deadline) and recorded in the state (as absolute deadlines), so {@link takeOver} can re-arm them
 * on a replica. Names: `T1-init`, `T1-cookie`, `T2-shutdown`, `T5-shutdown-guard`,
 * `SACK` (delayed SACK), `T4-asconf` (RFC 5061), `T3-rtx:<host>` and `HB:<host>` per path.
 * A `TimerFired` for a name not armed (or before its deadline) is ignored, so stale firings
 * are harmless.
 *
 * What the driver does: decode datagrams (CRC checked), demultiplex to the association by
 * verification tag ({@link myTag}) or by peer host and port ({@link peerHosts},
 * {@link peerPort}), feed packets that match none to the Listener, encode `Send`
 * packets with `Packet.encode` and send them to `to` (host and UDP port), run timers, and
 * forget the association on the `Closed` event.
 *
 * Byte fields of events and packets may be views into buffers the machine keeps; `Message`
 * data is owned by the receiver. `Send` takes over its `data` (fragments are views of it).
 *
 * Choices where RFC 9260 leaves room: new DATA avoids a path whose last transmission timed
 * out while a clean confirmed alternate exists, and such a path is probed every RTO (RFC
 * 7829 SCTP-PF with threshold 0), so a dead primary costs one RTO rather than a minute;
 * T1-cookie retransmissions go round robin over the peer's addresses, bundled with a
 * HEARTBEAT to an unconfirmed one (§5.4); an authentic but stale COOKIE ECHO naming this
 * very association is answered as case D. PR-SCTP (RFC 3758) is offered
 * (Forward-TSN-Supported) and FORWARD TSN understood on receipt; this end sends one only
 * after a {@link takeOver} with a reserve (it never abandons data otherwise). AUTH (RFC 4895,
 * see `Auth`) and ASCONF (RFC 5061, see `Asconf`) are offered (`Config.auth`,
 * `Config.asconf`): a peer's ASCONFs are accepted behind a valid AUTH chunk, and a
 * {@link takeOver} with `setPrimary` asks the peer to send to the new node's address. Not
 * implemented: gap-ack reneging (a gap-acked chunk is never resent unless T3 marks it),
 * DATA bundled with COOKIE ECHO, ECN (declined: not echoed), endpoint pair shared keys
 * (AUTH runs with Shared Key Identifier 0, the empty key), sending Add / Delete IP.
 *
 * @since 0.1.0
 */
export { type Config, defaultConfig } from "./internal/association/config.ts"
export { connect, fromCookie, type Seed } from "./internal/association/creation.ts"
export { checkInit, type InitCheck, initAckFor } from "./internal/association/init.ts"
export type {
  Command,
  Event,
  Input,
  Output,
  PeerAddress,
  Receive,
  Result,
} from "./internal/association/models.ts"
export {
  info,
  myTag,
  type PathStatus,
  peerHosts,
  peerPort,
  peerTag,
  type Status,
  sendBufferAvailable,
  stateName,
} from "./internal/association/read.ts"
export {
  restore,
  type Snapshot,
  snapshot,
  type TakeOverOptions,
  takeOver,
} from "./internal/association/snapshot.ts"
export type { State, StateName } from "./internal/association/state.ts"
export { step } from "./internal/association/step.ts"
