/**
 * The wire messages of the pool, as Effect Schemas with JSON codecs, so a driver or a fuzzer
 * decodes untrusted bytes into a typed message or a `CodecError`, never a throw.
 *
 * Two protocols: `Peer` between the servers of the pool (every message carries the sender's
 * `term`, checked once by the machine before dispatch), and `ClientRequest` / `ServerReply`
 * between clients (and the admin tool) and any server.
 *
 * @since 0.1.0
 */
import { Codec } from "@understudy/transport"
import { Schema } from "effect"

const Count = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const Millis = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))
const Id = Schema.String.check(Schema.isMaxLength(128))

/**
 * A license file: `seats` seats of `product` until `expiresAtMs`, numbered by `sequence`
 * (a newer file has a greater one) and signed by the vendor (`signature`, base64url Ed25519
 * over the other fields).
 *
 * @since 0.1.0
 * @category schemas
 */
export const License = Schema.Struct({
  product: Id,
  seats: Count,
  expiresAtMs: Millis,
  sequence: Count,
  signature: Schema.String.check(Schema.isMaxLength(256)),
})
/** @since 0.1.0 @category models */
export type License = typeof License.Type

/**
 * An authorisation: `client` may use `seats` seats of `product`, granted by `server` in
 * `term`; the token proves it to any server of the pool until `validUntilMs` (base64url
 * Ed25519 signature by the pool key over the other fields).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Token = Schema.Struct({
  client: Id,
  server: Id,
  term: Count,
  product: Id,
  seats: Count,
  validUntilMs: Millis,
  signature: Schema.String.check(Schema.isMaxLength(256)),
})
/** @since 0.1.0 @category models */
export type Token = typeof Token.Type

/**
 * One entry of a server's record of distribution: who holds how many seats, since when, and
 * until when the lease runs unless renewed by the client's heartbeats.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Allocation = Schema.Struct({
  client: Id,
  seats: Count,
  grantedAtMs: Millis,
  expiresAtMs: Millis,
})
/** @since 0.1.0 @category models */
export type Allocation = typeof Allocation.Type

/**
 * Why a server refused a request, a heartbeat or a license.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DenyReason = Schema.Literals([
  "capacity",
  "electing",
  "no-license",
  "license-expired",
  "wrong-product",
  "too-many-seats",
  "too-many-clients",
  "queue-full",
  "bad-token",
])
/** @since 0.1.0 @category models */
export type DenyReason = typeof DenyReason.Type

/**
 * Messages between servers. `Heartbeat` and `HeartbeatAck` are the leader's heartbeat and the
 * follower's acknowledgement; `Check` / `CheckReply` the
 * check message a follower sends before it starts an election; `Record` the
 * follower's record of distribution sent to the leader in parts; `Reserve` /
 * `Reserved` a follower asking the leader for a seat (`Unused`: it did not use one it got, or
 * its client gave it back),
 * which it does only beyond the share of seats the leader's `Heartbeat` gives it;
 * `WaitForShares` the leader's "fits, ask again shortly" while it takes shares back;
 * `LicenseRequest` / `LicenseOffer` the
 * spreading of a newer license file; `Newer` tells a sender its term is old.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Peer = Schema.Union([
  Schema.TaggedStruct("Heartbeat", {
    term: Count,
    seq: Count,
    /** The leader's license sequence number. */
    sequence: Count,
    /** Until then the follower may renew its clients' leases (0: not now). */
    authorityUntilMs: Millis,
    /** The leader does not hold the follower's current record: send it. */
    wantRecord: Schema.Boolean,
    /** The servers the leader hears from, in priority order. */
    live: Schema.Array(Id).check(Schema.isMaxLength(64)),
    /** The follower's life the share is for (`HeartbeatAck.life`; 0: none). */
    shareLife: Count,
    /**
     * The follower's share: the seats it may grant in this term without asking, counted
     * from the term's start (it has used some already: it may grant `shareLimit - used`).
     */
    shareLimit: Count,
    /**
     * The latest of the follower's records the leader merged in this term (the follower's
     * `life`, the record's `version`; null: none yet): what that record shows is counted.
     */
    merged: Schema.NullOr(Schema.Struct({ life: Count, version: Count })),
  }),
  Schema.TaggedStruct("HeartbeatAck", {
    term: Count,
    seq: Count,
    version: Count,
    used: Count,
    sequence: Count,
    /** Names this run of the follower: a restarted follower has forgotten its share. */
    life: Count,
    /** Seats it granted from its share in this term (some perhaps in no record sent yet). */
    shareUsed: Count,
  }),
  Schema.TaggedStruct("Check", { term: Count }),
  Schema.TaggedStruct("CheckReply", { term: Count }),
  Schema.TaggedStruct("VoteRequest", { term: Count }),
  Schema.TaggedStruct("Vote", { term: Count, granted: Schema.Boolean }),
  Schema.TaggedStruct("Record", {
    term: Count,
    version: Count,
    life: Count,
    /** Seats granted from shares in this term: those grants are in this record. */
    shareUsed: Count,
    part: Count,
    parts: Count,
    allocations: Schema.Array(Allocation).check(Schema.isMaxLength(256)),
  }),
  Schema.TaggedStruct("Reserve", {
    term: Count,
    client: Id,
    seats: Count,
    /** The client proved it held a seat elsewhere: allowed while the leader settles. */
    reattach: Schema.Boolean,
    /**
     * The server whose token of this term the client showed: the seat may be one that server
     * granted from its share, which the leader counts as share until it sees the record.
     */
    heldAt: Schema.NullOr(Id),
  }),
  Schema.TaggedStruct("Reserved", {
    term: Count,
    client: Id,
    seats: Count,
    /** Why the leader said no; null: granted. */
    refused: Schema.NullOr(DenyReason),
    /** The leader's time of the reservation, named again by `Unused`. */
    reservedAtMs: Millis,
  }),
  /**
   * The leader's answer to a `Reserve` that fits only once the followers' shares are taken
   * back: not refused, asked again in `retryAfterMs` (the follower tells its client `Wait`).
   */
  Schema.TaggedStruct("WaitForShares", {
    term: Count,
    client: Id,
    seats: Count,
    retryAfterMs: Millis,
  }),
  Schema.TaggedStruct("Unused", { term: Count, client: Id, reservedAtMs: Millis }),
  Schema.TaggedStruct("LicenseRequest", { term: Count }),
  Schema.TaggedStruct("LicenseOffer", { term: Count, license: License }),
  Schema.TaggedStruct("Newer", { term: Count }),
])
/** @since 0.1.0 @category models */
export type Peer = typeof Peer.Type

/**
 * What a client (or the admin tool) sends to a server. `seq` increases with every message of
 * one client: a heartbeat whose `seq` is not above the last one seen is a replay and is
 * dropped. `Beat` carries the client's token and when its lease ends as it knows it, so a
 * server that never authorised it can turn it into a request.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ClientRequest = Schema.Union([
  Schema.TaggedStruct("Request", { client: Id, seq: Count, product: Id, seats: Count }),
  Schema.TaggedStruct("Beat", { client: Id, seq: Count, token: Token, leaseUntilMs: Millis }),
  Schema.TaggedStruct("Release", { client: Id, seq: Count }),
  Schema.TaggedStruct("Publish", { license: License }),
  Schema.TaggedStruct("Status", {}),
])
/** @since 0.1.0 @category models */
export type ClientRequest = typeof ClientRequest.Type

/**
 * A server's answer to a client. `seq` names the request or heartbeat it answers, so a client
 * tells an answer to an older message (late, or overtaken on the way) from the current one,
 * and every answer about a seat names its `client` (several clients may share one socket).
 * `leaders` is the leader priority list; `reattached` says the grant took over an
 * authorisation from another server. `Wait` is neither a grant nor a refusal: ask again soon.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ServerReply = Schema.Union([
  Schema.TaggedStruct("Granted", {
    server: Id,
    term: Count,
    seq: Count,
    token: Token,
    expiresAtMs: Millis,
    leaders: Schema.Array(Id).check(Schema.isMaxLength(64)),
    reattached: Schema.Boolean,
  }),
  Schema.TaggedStruct("BeatAck", {
    server: Id,
    client: Id,
    term: Count,
    seq: Count,
    expiresAtMs: Millis,
    /** False while the server may not renew (no leader reachable): honoured, not renewed. */
    extended: Schema.Boolean,
    token: Schema.NullOr(Token),
  }),
  Schema.TaggedStruct("Denied", {
    server: Id,
    client: Id,
    term: Count,
    seq: Count,
    reason: DenyReason,
  }),
  /**
   * Not refused: the seats fit once the followers' shares are taken back. Ask again in
   * `retryAfterMs` (the leader's estimate of its next heartbeat and the acknowledgements).
   */
  Schema.TaggedStruct("Wait", {
    server: Id,
    client: Id,
    term: Count,
    seq: Count,
    retryAfterMs: Millis,
  }),
  Schema.TaggedStruct("Released", { server: Id, client: Id }),
  Schema.TaggedStruct("PublishReply", {
    server: Id,
    accepted: Schema.Boolean,
    reason: Schema.Literals(["adopted", "bad-signature", "not-newer"]),
    sequence: Count,
  }),
  Schema.TaggedStruct("StatusReply", {
    server: Id,
    role: Schema.Literals(["leader", "follower", "candidate"]),
    term: Count,
    leader: Schema.NullOr(Id),
    seatsInUse: Count,
    clients: Count,
    poolSeatsInUse: Schema.NullOr(Count),
    capacity: Count,
    /**
     * Seats this server may grant now without asking: a follower's unused share, a leader's
     * free seats not handed out as shares.
     */
    share: Count,
    product: Schema.NullOr(Id),
    sequence: Count,
  }),
])
/** @since 0.1.0 @category models */
export type ServerReply = typeof ServerReply.Type

/** @since 0.1.0 @category codecs */
export const peerCodec: Codec.Codec<Peer> = Codec.json(
  Peer as Schema.Codec<Peer, unknown>,
  "HeartbeatPool.Peer",
)
/** @since 0.1.0 @category codecs */
export const clientRequestCodec: Codec.Codec<ClientRequest> = Codec.json(
  ClientRequest,
  "HeartbeatPool.ClientRequest",
)
/** @since 0.1.0 @category codecs */
export const serverReplyCodec: Codec.Codec<ServerReply> = Codec.json(
  ServerReply,
  "HeartbeatPool.ServerReply",
)

/**
 * The JSON form of a license file (what `sign-license` writes), for reading one from disk.
 *
 * @since 0.1.0
 * @category codecs
 */
export const licenseFileCodec: Codec.Codec<License> = Codec.json(License, "HeartbeatPool.License")
