/**
 * The pool machine step by step, one behaviour of the source document's claims per test.
 */
import { describe, expect, it } from "@effect/vitest"
import { Machine as M } from "@understudy/machine"
import { HashMap } from "effect"
import * as Machine from "../src/Machine.ts"
import type * as Message from "../src/Message.ts"
import { electedLeader, fakeCrypto, ack as leaderAck, license, timing } from "./support/sim.ts"

const servers = ["s1", "s2", "s3"]
const pool = Machine.make({ servers, ...timing, crypto: fakeCrypto, initialLicense: license(2) })
type Out = ReadonlyArray<M.Output<Message.Peer, Machine.Event>>

const start = (self: string, nowMs = 0) =>
  pool.init({ self, peers: servers.filter((server) => server !== self), nowMs }).state
const step = (state: Machine.State, input: M.Input<Message.Peer, Machine.Command>) =>
  pool.step(state, input)
const sends = (outputs: Out, tag: Message.Peer["_tag"]) =>
  outputs.filter(
    (output): output is M.Send<Message.Peer> =>
      output._tag === "Send" && output.message._tag === tag,
  )
const events = (outputs: Out) => M.events(outputs)
const replies = (outputs: Out) =>
  events(outputs).flatMap((event) => (event._tag === "Reply" ? [event.message] : []))
const fromClient = (from: string, message: Message.ClientRequest, nowMs: number) =>
  M.command<Machine.Command>({ _tag: "FromClient", from, message }, nowMs)

/** The leader's heartbeat of term 1 (seq 1, no authority, no share, nothing merged), with `overrides`. */
const leaderHeartbeat = (
  overrides: Partial<Omit<Extract<Message.Peer, { readonly _tag: "Heartbeat" }>, "_tag">> = {},
): Message.Peer => ({
  _tag: "Heartbeat",
  term: 1,
  seq: 1,
  sequence: 1,
  authorityUntilMs: 0,
  wantRecord: false,
  live: servers,
  shareLife: 0,
  shareLimit: 0,
  merged: null,
  ...overrides,
})

/** A first request for one seat. */
const seatRequest = (client: string): Message.ClientRequest => ({
  _tag: "Request",
  client,
  seq: 1,
  product: "cad",
  seats: 1,
})

type Beat = Extract<Message.ClientRequest, { readonly _tag: "Beat" }>

/**
 * A heartbeat of `client` (default c1) carrying a one-seat token the pool signed at `server`
 * (default s2) in term 1, valid until `validUntilMs`, proving its lease until `leaseUntilMs`.
 */
const signedBeat = (
  seq: number,
  { client = "c1", server = "s2", validUntilMs = 10_000, leaseUntilMs = 4_000 } = {},
): Beat => {
  const claims = { client, server, term: 1, product: "cad", seats: 1, validUntilMs }
  return {
    _tag: "Beat",
    client,
    seq,
    token: { ...claims, signature: fakeCrypto.signToken(claims) },
    leaseUntilMs,
  }
}

/** s1 elected leader of term 1, records merged, settled at `nowMs` (past 605 + lease). */
const leader = (nowMs = 3_000, machine: Machine.Pool = pool): Machine.State =>
  electedLeader(machine, nowMs)

describe("heartbeat pool machine", () => {
  it("claim 22: a follower that misses heartbeats sends a check message first, and stands only if it goes unanswered", () => {
    let follower = start("s2")
    follower = step(follower, M.receive("s1", leaderHeartbeat(), 10)).state
    // Heartbeats stop: after the follower time-out, a check goes to the leader, not an election.
    const missed = step(follower, M.timerFired(Machine.tickTimer, 10 + timing.followerTimeoutMs))
    expect(sends(missed.outputs, "Check").map((send) => send.to)).toEqual(["s1"])
    expect(events(missed.outputs).some((event) => event._tag === "ElectionStarted")).toBe(false)
    // Answered: the leader is alive, no election.
    const answered = step(missed.state, M.receive("s1", { _tag: "CheckReply", term: 1 }, 620))
    expect(events(answered.outputs).map((event) => event._tag)).toContain("LeaderConfirmed")
    const later = step(answered.state, M.timerFired(Machine.tickTimer, 700))
    expect(
      later.outputs.some(
        (output) => output._tag === "SetTimer" && output.timer === Machine.electionTimer,
      ),
    ).toBe(false)
    // Unanswered: after the check time-out the election timer is set, then it stands.
    const unanswered = step(
      missed.state,
      M.timerFired(Machine.tickTimer, 10 + timing.followerTimeoutMs + timing.checkTimeoutMs),
    )
    expect(
      unanswered.outputs.some(
        (output) => output._tag === "SetTimer" && output.timer === Machine.electionTimer,
      ),
    ).toBe(true)
    const stood = step(unanswered.state, M.timerFired(Machine.electionTimer, 900))
    expect(events(stood.outputs)).toContainEqual({ _tag: "ElectionStarted", term: 2 })
    expect(stood.state.durable).toEqual({ term: 2, votedFor: "s2", license: license(2) })
  })

  it("a split vote: of two candidates of one term, the one higher in the priority list stands again at once and the other votes for it, never twice in a term", () => {
    // The leader s1 is silent; s2 and s3 stand for the same term in the same millisecond (a
    // stall ate the priority stagger): each voted for itself, neither can win term 1.
    const s2 = step(start("s2"), M.timerFired(Machine.electionTimer, 900))
    const s3 = step(start("s3"), M.timerFired(Machine.electionTimer, 900))
    expect(s2.state.durable.votedFor).toBe("s2")
    expect(s3.state.durable.votedFor).toBe("s3")
    // s3, lower in the list, hears s2's request: refuses (it voted) and waits for its retry.
    const s3Heard = step(s3.state, M.receive("s2", { _tag: "VoteRequest", term: 1 }, 903))
    expect(sends(s3Heard.outputs, "Vote").map((send) => send.message)).toEqual([
      { _tag: "Vote", term: 1, granted: false },
    ])
    expect(events(s3Heard.outputs).some((event) => event._tag === "ElectionStarted")).toBe(false)
    expect(s3Heard.state.durable).toMatchObject({ term: 1, votedFor: "s3" })
    // s2 hears s3's request: refuses it too, and stands for term 2 at once, not after its retry
    // (650 ms, in which the same split may happen again).
    const s2Heard = step(s2.state, M.receive("s3", { _tag: "VoteRequest", term: 1 }, 903))
    expect(sends(s2Heard.outputs, "Vote").map((send) => send.message)).toEqual([
      { _tag: "Vote", term: 1, granted: false },
    ])
    expect(events(s2Heard.outputs)).toContainEqual({ _tag: "ElectionStarted", term: 2 })
    expect(s2Heard.outputs).toContainEqual(M.broadcast({ _tag: "VoteRequest", term: 2 }))
    // s3 votes for s2 in term 2 (its first vote there), and s2 leads term 2.
    const s3Voted = step(s3Heard.state, M.receive("s2", { _tag: "VoteRequest", term: 2 }, 905))
    expect(sends(s3Voted.outputs, "Vote").map((send) => send.message)).toEqual([
      { _tag: "Vote", term: 2, granted: true },
    ])
    expect(s3Voted.state.durable).toMatchObject({ term: 2, votedFor: "s2" })
    const elected = step(
      s2Heard.state,
      M.receive("s3", { _tag: "Vote", term: 2, granted: true }, 907),
    )
    expect(events(elected.outputs)).toContainEqual({ _tag: "BecameLeader", term: 2 })
    // A leader that hears a lower-ranked server stand for its own term neither votes nor stands.
    const retry = step(elected.state, M.receive("s3", { _tag: "VoteRequest", term: 2 }, 910))
    expect(sends(retry.outputs, "Vote").map((send) => send.message)).toEqual([
      { _tag: "Vote", term: 2, granted: false },
    ])
    expect(retry.state.role).toBe("leader")
  })

  it("claim 21: the leader marks a follower down when its acknowledgements stop", () => {
    let state = leader()
    let downs: Array<Machine.Event> = []
    for (let nowMs = 3_000; nowMs <= 3_000 + timing.downAfterMs + 200; nowMs += 100) {
      const result = step(state, M.timerFired(Machine.tickTimer, nowMs))
      state = step(
        result.state,
        M.receive(
          "s2",
          {
            _tag: "HeartbeatAck",
            term: 1,
            seq: result.state.leaderState!.seq,
            version: 0,
            used: 0,
            sequence: 1,
            life: 1,
            shareUsed: 0,
          },
          nowMs + 1,
        ),
      ).state
      downs = downs.concat(events(result.outputs).filter((event) => event._tag === "FollowerDown"))
    }
    expect(downs).toEqual([{ _tag: "FollowerDown", server: "s3", term: 1 }])
  })

  it("claims 23, 40: a new leader heartbeats the followers, which send their records, merged into the pool record", () => {
    let state = step(start("s1"), M.timerFired(Machine.electionTimer, 600)).state
    const elected = step(state, M.receive("s2", { _tag: "Vote", term: 1, granted: true }, 605))
    expect(
      sends(elected.outputs, "Heartbeat").map((send) => [
        send.to,
        (send.message as { wantRecord: boolean }).wantRecord,
      ]),
    ).toEqual([
      ["s2", true],
      ["s3", true],
    ])
    state = elected.state
    const allocation = (client: string): Message.Allocation => ({
      client,
      seats: 1,
      grantedAtMs: 100,
      expiresAtMs: 5_000,
    })
    // s2's record in two parts, s3's in one.
    state = step(
      state,
      M.receive(
        "s2",
        {
          _tag: "Record",
          term: 1,
          version: 7,
          life: 1,
          shareUsed: 0,
          part: 1,
          parts: 2,
          allocations: [allocation("b")],
        },
        610,
      ),
    ).state
    expect(Machine.poolRecord(state)).toEqual(new Set())
    const merged = step(
      state,
      M.receive(
        "s2",
        {
          _tag: "Record",
          term: 1,
          version: 7,
          life: 1,
          shareUsed: 0,
          part: 0,
          parts: 2,
          allocations: [allocation("a")],
        },
        611,
      ),
    )
    expect(events(merged.outputs)).toContainEqual({
      _tag: "RecordMerged",
      server: "s2",
      version: 7,
      allocations: 2,
    })
    state = step(
      merged.state,
      M.receive(
        "s3",
        {
          _tag: "Record",
          term: 1,
          version: 3,
          life: 1,
          shareUsed: 0,
          part: 0,
          parts: 1,
          allocations: [allocation("c")],
        },
        612,
      ),
    ).state
    expect(Machine.poolRecord(state)).toEqual(new Set(["a", "b", "c"]))
    expect(Machine.poolSeatsInUse(state, 700, timing.leaseMs)).toBe(3)
  })

  it("claim 9: the leader turns a heartbeat from a client it never authorised into a request; a follower carries it until the leader counts it there", () => {
    const beat = signedBeat(5)
    const state = leader()
    const converted = step(state, fromClient("c1", beat, 3_000))
    expect(events(converted.outputs)).toContainEqual({
      _tag: "Allocated",
      client: "c1",
      seats: 1,
      term: 1,
      reattached: true,
      fromShare: false,
      atMs: 3_000,
    })
    expect(replies(converted.outputs)[0]).toMatchObject({
      _tag: "Granted",
      server: "s1",
      reattached: true,
      leaders: servers,
    })
    expect(HashMap.has(converted.state.record, "c1")).toBe(true)
    // A follower takes the stranger in at once, honoured only until the lease it proved, and
    // asks the leader to count it there (no election or leader needed to re-attach).
    let follower = start("s3")
    follower = step(
      follower,
      M.receive("s1", leaderHeartbeat({ authorityUntilMs: 3_300 }), 2_950),
    ).state
    const carried = step(follower, fromClient("c1", beat, 3_000))
    expect(replies(carried.outputs)).toEqual([
      {
        _tag: "Granted",
        server: "s3",
        term: 1,
        seq: 5,
        token: beat.token,
        expiresAtMs: 4_000,
        leaders: servers,
        reattached: true,
      },
    ])
    expect(sends(carried.outputs, "Reserve")).toEqual([
      {
        _tag: "Send",
        to: "s1",
        message: {
          _tag: "Reserve",
          term: 1,
          client: "c1",
          seats: 1,
          reattach: true,
          // A token of this term: the seat may be one s2 granted from its share.
          heldAt: "s2",
        },
      },
    ])
    // Until the leader answers, its heartbeats are honoured, never renewed past that lease.
    const honoured = step(carried.state, fromClient("c1", { ...beat, seq: 6 }, 3_100))
    expect(replies(honoured.outputs)[0]).toMatchObject({
      _tag: "BeatAck",
      extended: false,
      expiresAtMs: 4_000,
    })
    expect(sends(honoured.outputs, "Reserve")).toEqual([]) // asked already
    // The leader counted it here: the next answer renews it.
    const counted = step(
      honoured.state,
      M.receive(
        "s1",
        {
          _tag: "Reserved",
          term: 1,
          client: "c1",
          seats: 1,
          refused: null,
          reservedAtMs: 3_050,
        },
        3_150,
      ),
    )
    expect(replies(counted.outputs)[0]).toMatchObject({
      _tag: "Granted",
      expiresAtMs: 3_150 + timing.leaseMs,
    })
    // Without a leader's authority (an election), it is carried but nobody is asked.
    const alone = step(start("s2"), fromClient("c1", beat, 3_000))
    expect(replies(alone.outputs)[0]).toMatchObject({ _tag: "Granted", expiresAtMs: 4_000 })
    expect(sends(alone.outputs, "Reserve")).toEqual([])
    // A heartbeat that proves no unexpired lease is a plain request: no leader, no seat.
    const late = step(start("s2"), fromClient("c1", { ...beat, leaseUntilMs: 2_000 }, 3_000))
    expect(replies(late.outputs)).toEqual([
      { _tag: "Denied", server: "s2", client: "c1", term: 0, seq: 5, reason: "electing" },
    ])
  })

  it("a carried seat is renewed once the leader merged a record that shows it, with no Reserve round trip: the first record of the term or a later one", () => {
    const beatOf = (client: string, seq: number) => signedBeat(seq, { client, server: "s1" })
    const heartbeat = (
      seq: number,
      wantRecord: boolean,
      authorityUntilMs: number,
      merged: { readonly life: number; readonly version: number } | null,
    ) =>
      M.receive(
        "s2",
        leaderHeartbeat({ term: 2, seq, authorityUntilMs, wantRecord, merged }),
        3_000 + seq,
      )
    const recordOf = (outputs: Out) => {
      const record = sends(outputs, "Record")[0]!.message
      if (record._tag !== "Record") throw new Error("not a record")
      return record
    }
    // s1 died: s3 carries c1 while no one leads (nobody to ask).
    let follower = step(start("s3"), fromClient("c1", beatOf("c1", 5), 2_500)).state
    // s2, elected in term 2, asks for the record: it shows c1.
    const asked = step(follower, heartbeat(1, true, 0, null))
    const first = recordOf(asked.outputs)
    expect(first.allocations.map((held) => held.client)).toEqual(["c1"])
    follower = asked.state
    // A client carried after that record left is not in it.
    follower = step(follower, fromClient("c2", beatOf("c2", 5), 3_002)).state
    // The leader merged it and gives authority: c1 is renewed on its next heartbeat, unasked.
    const merged = (version: number) => ({ life: follower.life, version })
    follower = step(follower, heartbeat(2, false, 3_300, merged(first.version))).state
    const renewed = step(follower, fromClient("c1", beatOf("c1", 6), 3_010))
    expect(replies(renewed.outputs)[0]).toMatchObject({
      _tag: "BeatAck",
      extended: true,
      expiresAtMs: 3_010 + timing.leaseMs,
    })
    expect(sends(renewed.outputs, "Reserve")).toEqual([])
    // c2 is honoured, not renewed, and the leader is asked to count it.
    const honoured = step(renewed.state, fromClient("c2", beatOf("c2", 6), 3_020))
    expect(replies(honoured.outputs)[0]).toMatchObject({ _tag: "BeatAck", extended: false })
    expect(sends(honoured.outputs, "Reserve").map((send) => send.message)).toMatchObject([
      { client: "c2", reattach: true },
    ])
    // The leader asks again (the record changed) and merges the record that shows c2: c2 is
    // renewed on its next heartbeat, without waiting for the answer to its Reserve.
    const again = step(honoured.state, heartbeat(3, true, 3_300, merged(first.version)))
    const later = recordOf(again.outputs)
    expect(later.allocations.map((held) => held.client).sort()).toEqual(["c1", "c2"])
    follower = step(again.state, heartbeat(4, false, 3_400, merged(later.version))).state
    const renewedLater = step(follower, fromClient("c2", beatOf("c2", 7), 3_030))
    expect(replies(renewedLater.outputs)[0]).toMatchObject({
      _tag: "BeatAck",
      extended: true,
      expiresAtMs: 3_030 + timing.leaseMs,
    })
    expect(sends(renewedLater.outputs, "Reserve")).toEqual([])
    // A merged record of another life of this server (before a restart) counts nothing here.
    const otherLife = step(
      again.state,
      heartbeat(4, false, 3_400, { life: follower.life + 1, version: later.version }),
    ).state
    const notCounted = step(otherLife, fromClient("c2", beatOf("c2", 7), 3_030))
    expect(replies(notCounted.outputs)[0]).toMatchObject({ _tag: "BeatAck", extended: false })
    // Nor does a merged record once the carried lease is over (expired, not yet dropped).
    const over = step(follower, fromClient("c2", beatOf("c2", 7), 4_000))
    expect(replies(over.outputs)[0]).toMatchObject({ _tag: "BeatAck", extended: false })
  })

  it("the license count is never exceeded, and a new leader grants no new seat while settling", () => {
    let state = leader()
    for (const client of ["a", "b"])
      state = step(state, fromClient(client, seatRequest(client), 3_000)).state
    const third = step(state, fromClient("c", seatRequest("c"), 3_000))
    expect(replies(third.outputs)).toEqual([
      { _tag: "Denied", server: "s1", client: "c", term: 1, seq: 1, reason: "capacity" },
    ])
    // Freshly elected: settling for a lease, only re-attachments.
    let fresh = step(start("s1"), M.timerFired(Machine.electionTimer, 600)).state
    fresh = step(fresh, M.receive("s2", { _tag: "Vote", term: 1, granted: true }, 605)).state
    fresh = step(
      fresh,
      M.receive(
        "s2",
        {
          _tag: "HeartbeatAck",
          term: 1,
          seq: 1,
          version: 0,
          used: 0,
          sequence: 1,
          life: 1,
          shareUsed: 0,
        },
        610,
      ),
    ).state
    expect(replies(step(fresh, fromClient("a", seatRequest("a"), 700)).outputs)).toEqual([
      { _tag: "Denied", server: "s1", client: "a", term: 1, seq: 1, reason: "electing" },
    ])
  })

  it("claims 10, 19: a newer license spreads through the leader; a forged or older one is refused, never adopted", () => {
    const state = leader()
    // A follower that restarted with sequence 2 says so in its ack: the leader asks for it.
    const ack = step(
      state,
      M.receive(
        "s3",
        {
          _tag: "HeartbeatAck",
          term: 1,
          seq: 1,
          version: 0,
          used: 0,
          sequence: 2,
          life: 1,
          shareUsed: 0,
        },
        3_001,
      ),
    )
    expect(sends(ack.outputs, "LicenseRequest").map((send) => send.to)).toEqual(["s3"])
    const adopted = step(
      ack.state,
      M.receive("s3", { _tag: "LicenseOffer", term: 1, license: license(5, 2) }, 3_002),
    )
    expect(events(adopted.outputs)).toContainEqual({
      _tag: "LicenseAdopted",
      sequence: 2,
      from: "s3",
    })
    expect(adopted.state.durable.license?.sequence).toBe(2)
    // Its heartbeats now carry sequence 2, so followers fetch it.
    const beat = step(adopted.state, M.timerFired(Machine.tickTimer, 3_100))
    expect(
      sends(beat.outputs, "Heartbeat").every(
        (send) => (send.message as { sequence: number }).sequence === 2,
      ),
    ).toBe(true)
    const forged = step(
      adopted.state,
      M.receive(
        "s2",
        { _tag: "LicenseOffer", term: 1, license: { ...license(99, 3), signature: "forged" } },
        3_003,
      ),
    )
    expect(events(forged.outputs)).toContainEqual({
      _tag: "LicenseRefused",
      sequence: 3,
      from: "s2",
      reason: "bad-signature",
    })
    expect(forged.state.durable.license?.sequence).toBe(2)
    const older = step(
      adopted.state,
      M.receive("s2", { _tag: "LicenseOffer", term: 1, license: license(2, 1) }, 3_003),
    )
    expect(events(older.outputs)).toContainEqual({
      _tag: "LicenseRefused",
      sequence: 1,
      from: "s2",
      reason: "not-newer",
    })
    expect(older.state.durable.license?.sequence).toBe(2)
  })

  it("terms: an older term is ignored and told, an absurd one refused and never adopted, a newer one deposes the leader", () => {
    const state = leader()
    const absurd = step(
      state,
      M.receive("s2", leaderHeartbeat({ term: Machine.termMax + 1, live: [] }), 3_001),
    )
    expect(events(absurd.outputs)).toEqual([{ _tag: "Ignored", from: "s2", reason: "bad-term" }])
    expect(absurd.state).toBe(state)
    const newer = step(state, M.receive("s2", leaderHeartbeat({ term: 5, live: [] }), 3_001))
    expect(newer.state.role).toBe("follower")
    expect(newer.state.durable.term).toBe(5)
    expect(events(newer.outputs)).toContainEqual({
      _tag: "SteppedDown",
      term: 1,
      reason: "newer-term",
    })
    // The deposed leader grants nothing any more.
    const request = step(newer.state, fromClient("x", seatRequest("x"), 3_002))
    expect(events(request.outputs).some((event) => event._tag === "Allocated")).toBe(false)
    const stale = step(newer.state, M.receive("s3", leaderHeartbeat({ seq: 9, live: [] }), 3_003))
    expect(sends(stale.outputs, "Newer")).toEqual([M.send("s3", { _tag: "Newer", term: 5 })])
  })

  it("a leader continued after a stop, still in its old term, grants nothing: it steps down, carries a proven seat without renewing it, refuses a new one", () => {
    // s1 leads term 1 until 3,000, then is stopped: no acknowledgement comes any more.
    const stopped = leader()
    const continued = step(
      stopped,
      M.timerFired(Machine.tickTimer, 3_000 + timing.followerTimeoutMs),
    )
    expect(continued.state.role).toBe("follower")
    expect(continued.state.durable.term).toBe(1)
    expect(events(continued.outputs)).toContainEqual({
      _tag: "SteppedDown",
      term: 1,
      reason: "no-majority",
    })
    // A client that walked here while it was stopped proves its seat: honoured to the end of
    // its lease, not renewed, and nothing allocated.
    const beat = signedBeat(5)
    const carried = step(continued.state, fromClient("c1", beat, 3_510))
    expect(events(carried.outputs)).toContainEqual({
      _tag: "Carried",
      client: "c1",
      seats: 1,
      term: 1,
      atMs: 3_510,
    })
    expect(events(carried.outputs).some((event) => event._tag === "Allocated")).toBe(false)
    expect(replies(carried.outputs)).toMatchObject([{ _tag: "Granted", expiresAtMs: 4_000 }])
    const again = step(carried.state, fromClient("c1", { ...beat, seq: 6 }, 3_600))
    expect(replies(again.outputs)).toMatchObject([
      { _tag: "BeatAck", extended: false, expiresAtMs: 4_000 },
    ])
    // A new client is refused.
    const request = step(carried.state, fromClient("x", seatRequest("x"), 3_600))
    expect(events(request.outputs).some((event) => event._tag === "Allocated")).toBe(false)
    expect(replies(request.outputs)).toMatchObject([{ _tag: "Denied", reason: "electing" }])
  })

  it("forged tokens and replayed heartbeats grant nothing", () => {
    let state = leader()
    state = step(state, fromClient("a", seatRequest("a"), 3_000)).state
    const claims = {
      client: "b",
      server: "s2",
      term: 1,
      product: "cad",
      seats: 1,
      validUntilMs: 10_000,
    }
    const forged = step(
      state,
      fromClient(
        "b",
        {
          _tag: "Beat",
          client: "b",
          seq: 2,
          token: { ...claims, signature: "sig:forged" },
          leaseUntilMs: 5_000,
        },
        3_001,
      ),
    )
    expect(replies(forged.outputs)).toEqual([
      { _tag: "Denied", server: "s1", client: "b", term: 1, seq: 2, reason: "bad-token" },
    ])
    expect(HashMap.has(forged.state.record, "b")).toBe(false)
    // Someone else's token for this client name: refused too.
    const stolen = { ...claims, client: "a" }
    const other = step(
      state,
      fromClient(
        "b",
        {
          _tag: "Beat",
          client: "b",
          seq: 2,
          token: { ...stolen, signature: fakeCrypto.signToken(stolen) },
          leaseUntilMs: 5_000,
        },
        3_001,
      ),
    )
    expect(replies(other.outputs)[0]).toMatchObject({ _tag: "Denied", reason: "bad-token" })
    // A replayed heartbeat (same seq) is dropped.
    const granted = replies(
      step(leader(), fromClient("a", seatRequest("a"), 3_000)).outputs,
    )[0] as Extract<Message.ServerReply, { _tag: "Granted" }>
    const beat: Message.ClientRequest = {
      _tag: "Beat",
      client: "a",
      seq: 3,
      token: granted.token,
      leaseUntilMs: 3_000,
    }
    const first = step(state, fromClient("a", beat, 3_050))
    expect(replies(first.outputs)[0]).toMatchObject({ _tag: "BeatAck", extended: true })
    const replayed = step(first.state, fromClient("a", beat, 3_060))
    expect(events(replayed.outputs)).toEqual([{ _tag: "Ignored", from: "a", reason: "replayed" }])
  })

  it("every limit refuses with a typed reason", () => {
    const small = Machine.make({
      servers,
      ...timing,
      crypto: fakeCrypto,
      initialLicense: license(10),
      clientsPerServerMax: 1,
      seatsPerClientMax: 2,
    })
    const state = leader()
    const ask = (
      machine: Machine.Pool,
      at: Machine.State,
      client: string,
      product: string,
      seats: number,
    ) =>
      replies(
        machine.step(
          at,
          fromClient(client, { _tag: "Request", client, seq: 1, product, seats }, 3_000),
        ).outputs,
      )
    expect(ask(small, state, "a", "cad", 3)).toEqual([
      { _tag: "Denied", server: "s1", client: "a", term: 1, seq: 1, reason: "too-many-seats" },
    ])
    expect(ask(small, state, "a", "other", 1)).toEqual([
      { _tag: "Denied", server: "s1", client: "a", term: 1, seq: 1, reason: "wrong-product" },
    ])
    const one = small.step(state, fromClient("a", seatRequest("a"), 3_000)).state
    expect(ask(small, one, "b", "cad", 1)).toEqual([
      { _tag: "Denied", server: "s1", client: "b", term: 1, seq: 1, reason: "too-many-clients" },
    ])
    const expired: Machine.State = {
      ...state,
      durable: { ...state.durable, license: { ...license(10), expiresAtMs: 100 } },
    }
    expect(ask(small, expired, "a", "cad", 1)).toEqual([
      { _tag: "Denied", server: "s1", client: "a", term: 1, seq: 1, reason: "license-expired" },
    ])
    // A follower with no share and one request already waiting for the leader: the next
    // client's request is refused (queued requests are bounded), not queued.
    const queue = Machine.make({
      servers,
      ...timing,
      crypto: fakeCrypto,
      initialLicense: license(10),
      pendingReservationsMax: 1,
      shareSeatsMax: 0,
    })
    const heartbeat: Message.Peer = leaderHeartbeat({ authorityUntilMs: 3_300 })
    const follower = queue.step(
      queue.init({ self: "s2", peers: ["s1", "s3"], nowMs: 0 }).state,
      M.receive("s1", heartbeat, 2_990),
    ).state
    const waiting = queue.step(follower, fromClient("a", seatRequest("a"), 3_000))
    expect(sends(waiting.outputs, "Reserve")).toHaveLength(1)
    expect(ask(queue, waiting.state, "b", "cad", 1)).toEqual([
      { _tag: "Denied", server: "s2", client: "b", term: 1, seq: 1, reason: "queue-full" },
    ])
  })
})

describe("shares: a follower grants within the share the leader gave it, or asks the leader", () => {
  const shared = Machine.make({
    servers,
    ...timing,
    crypto: fakeCrypto,
    initialLicense: license(8),
  })
  const request = (client: string, nowMs: number) => fromClient(client, seatRequest(client), nowMs)
  const heartbeatOf = (outputs: Out, to: string) => {
    const heartbeat = sends(outputs, "Heartbeat").find((send) => send.to === to)!.message
    return heartbeat as Extract<Message.Peer, { _tag: "Heartbeat" }>
  }
  const ack = (seq: number, shareUsed: number, life = 1): Message.Peer => ({
    _tag: "HeartbeatAck",
    term: 1,
    seq,
    version: 0,
    used: 0,
    sequence: 1,
    life,
    shareUsed,
  })
  const outstanding = (state: Machine.State, nowMs: number) =>
    Machine.sharesOutstanding(state, nowMs, timing.leaseMs)
  const status = (machine: Machine.Pool, state: Machine.State, nowMs: number) =>
    replies(
      machine.step(state, fromClient("admin", { _tag: "Status" }, nowMs)).outputs,
    )[0] as Extract<Message.ServerReply, { _tag: "StatusReply" }>

  /** A follower of s1 in term 1 that heard `heartbeat`. */
  const follower = (heartbeat: Message.Peer, nowMs: number) =>
    shared.step(
      shared.init({ self: "s2", peers: ["s1", "s3"], nowMs: 0 }).state,
      M.receive("s1", heartbeat, nowMs),
    ).state

  it("the leader splits the free seats with its followers, counts the shares, and a follower grants within its share without asking", () => {
    const tick = shared.step(leader(3_000, shared), M.timerFired(Machine.tickTimer, 3_000))
    // 8 free seats: 2 for each of the two followers (their life is 1), the rest kept.
    const toS2 = heartbeatOf(tick.outputs, "s2")
    expect(toS2).toMatchObject({ shareLife: 1, shareLimit: 2 })
    expect(heartbeatOf(tick.outputs, "s3")).toMatchObject({ shareLife: 1, shareLimit: 2 })
    expect(outstanding(tick.state, 3_001)).toBe(4)
    expect(status(shared, tick.state, 3_001)).toMatchObject({ share: 4, poolSeatsInUse: 0 })

    let s2 = follower(toS2, 3_001)
    expect(Machine.shareLeft(s2, 3_002)).toBe(2)
    expect(status(shared, s2, 3_002)).toMatchObject({ role: "follower", share: 2 })
    for (const client of ["c1", "c2"]) {
      const granted = shared.step(s2, request(client, 3_002))
      expect(events(granted.outputs)).toContainEqual({
        _tag: "Allocated",
        client,
        seats: 1,
        term: 1,
        reattached: false,
        fromShare: true,
        atMs: 3_002,
      })
      expect(replies(granted.outputs)[0]).toMatchObject({ _tag: "Granted", server: "s2" })
      expect(sends(granted.outputs, "Reserve")).toEqual([])
      s2 = granted.state
    }
    // The share is used up: the third client is asked for at the leader, not granted here.
    const third = shared.step(s2, request("c3", 3_003))
    expect(events(third.outputs).some((event) => event._tag === "Allocated")).toBe(false)
    expect(sends(third.outputs, "Reserve").map((send) => send.to)).toEqual(["s1"])
    expect(Machine.shareLeft(third.state, 3_003)).toBe(0)

    // The leader: the two grants stay counted (as share) until the record shows them.
    let lead = shared.step(tick.state, M.receive("s2", ack(toS2.seq, 2), 3_004)).state
    expect(outstanding(lead, 3_004)).toBe(4)
    lead = shared.step(
      lead,
      M.receive(
        "s2",
        {
          _tag: "Record",
          term: 1,
          version: s2.version,
          life: 1,
          shareUsed: 2,
          part: 0,
          parts: 1,
          allocations: ["c1", "c2"].map((client) => ({
            client,
            seats: 1,
            grantedAtMs: 3_002,
            expiresAtMs: 3_002 + timing.leaseMs,
          })),
        },
        3_005,
      ),
    ).state
    expect(outstanding(lead, 3_005)).toBe(2)
    expect(Machine.poolSeatsInUse(lead, 3_005, timing.leaseMs)).toBe(2)
    // Next heartbeat: 6 free seats, 2 more for s2 (its limit counts from the term's start).
    const next = shared.step(lead, M.timerFired(Machine.tickTimer, 3_100))
    expect(heartbeatOf(next.outputs, "s2")).toMatchObject({ shareLimit: 4 })
    expect(heartbeatOf(next.outputs, "s3")).toMatchObject({ shareLimit: 2 })
  })

  it("a follower's answer after asking the leader names the client's latest request", () => {
    const s2 = follower(leaderHeartbeat({ authorityUntilMs: 3_300, shareLife: 1 }), 3_000)
    const asked = shared.step(s2, request("c1", 3_001))
    expect(sends(asked.outputs, "Reserve").map((send) => send.to)).toEqual(["s1"])
    expect(replies(asked.outputs)).toEqual([])
    // Its answer is late: the client asks again (no second Reserve while one is awaited).
    const again = shared.step(
      asked.state,
      fromClient("c1", { _tag: "Request", client: "c1", seq: 2, product: "cad", seats: 1 }, 3_050),
    )
    expect(sends(again.outputs, "Reserve")).toEqual([])
    const answer = (refused: Message.DenyReason | null): Message.Peer => ({
      _tag: "Reserved",
      term: 1,
      client: "c1",
      seats: 1,
      refused,
      reservedAtMs: 3_002,
    })
    const granted = shared.step(again.state, M.receive("s1", answer(null), 3_060))
    expect(replies(granted.outputs)).toMatchObject([{ _tag: "Granted", server: "s2", seq: 2 }])
    const refused = shared.step(again.state, M.receive("s1", answer("capacity"), 3_060))
    expect(replies(refused.outputs)).toEqual([
      { _tag: "Denied", server: "s2", client: "c1", term: 1, seq: 2, reason: "capacity" },
    ])
  })

  it("a follower whose Reserve must wait for the shares tells its client to Wait, and asks the leader again with the client's next request", () => {
    const s2 = follower(leaderHeartbeat({ authorityUntilMs: 3_300, shareLife: 1 }), 3_000)
    const asked = shared.step(s2, request("c1", 3_001))
    expect(sends(asked.outputs, "Reserve").map((send) => send.to)).toEqual(["s1"])
    const waitFor = (seats: number): Message.Peer => ({
      _tag: "WaitForShares",
      term: 1,
      client: "c1",
      seats,
      retryAfterMs: 120,
    })
    const waited = shared.step(asked.state, M.receive("s1", waitFor(1), 3_010))
    expect(replies(waited.outputs)).toEqual([
      { _tag: "Wait", server: "s2", client: "c1", term: 1, seq: 1, retryAfterMs: 120 },
    ])
    expect(events(waited.outputs).filter((event) => event._tag === "Refused")).toEqual([])
    // Within the check time-out of the first Reserve, the client's next request asks again.
    const again = shared.step(
      waited.state,
      fromClient("c1", { _tag: "Request", client: "c1", seq: 2, product: "cad", seats: 1 }, 3_130),
    )
    expect(sends(again.outputs, "Reserve").map((send) => send.to)).toEqual(["s1"])
    // Not from the leader, or not for what is asked: ignored.
    for (const [from, seats] of [
      ["s3", 1],
      ["s1", 2],
    ] as const) {
      const ignored = shared.step(asked.state, M.receive(from, waitFor(seats), 3_010))
      expect(replies(ignored.outputs)).toEqual([])
    }
  })

  it("takes shares back: from a follower that is down (counted until it could no longer use it), and on demand when a request would not fit without them", () => {
    let lead = shared.step(leader(3_000, shared), M.timerFired(Machine.tickTimer, 3_000)).state
    const firstSeq = lead.leaderState!.seq
    lead = shared.step(lead, M.receive("s2", ack(firstSeq, 0), 3_001)).state
    lead = shared.step(lead, M.receive("s3", ack(firstSeq, 0), 3_001)).state
    expect(outstanding(lead, 3_002)).toBe(4)
    // s3 stops acknowledging: once it is down it gets no share (limit 0), but what it was given
    // counts until its authority and a lease have run out.
    let atMs = 3_100
    let lastToS3 = 2
    for (; atMs <= 3_000 + timing.downAfterMs + 200; atMs += 100) {
      const tick = shared.step(lead, M.timerFired(Machine.tickTimer, atMs))
      lastToS3 = heartbeatOf(tick.outputs, "s3").shareLimit
      lead = shared.step(
        tick.state,
        M.receive("s2", ack(tick.state.leaderState!.seq, 0), atMs + 1),
      ).state
    }
    expect(lead.leaderState!.followers.s3!.down).toBe(true)
    expect(lastToS3).toBe(0)
    expect(Machine.shareOutstanding(lead.leaderState!.followers.s3!, atMs, timing.leaseMs)).toBe(2)
    const authority = lead.leaderState!.followers.s3!.authoritySentUntilMs
    expect(
      Machine.shareOutstanding(
        lead.leaderState!.followers.s3!,
        authority + timing.leaseMs,
        timing.leaseMs,
      ),
    ).toBe(0)

    // On demand: the leader fills what is not out as shares, then a request that fits only
    // in seats out as shares is not refused: told to Wait, it takes every share back; once
    // acknowledged, the seats come to the leader and the client's next ask is granted.
    let seat = 0
    while (status(shared, lead, atMs).share > 0) {
      const granted = shared.step(lead, request(`d${++seat}`, atMs))
      expect(replies(granted.outputs)[0]).toMatchObject({ _tag: "Granted" })
      lead = granted.state
    }
    expect(seat).toBeGreaterThan(0)
    const waiting = shared.step(lead, request("late", atMs))
    const [wait] = replies(waiting.outputs)
    expect(replies(waiting.outputs)).toEqual([
      {
        _tag: "Wait",
        server: "s1",
        client: "late",
        term: 1,
        seq: 1,
        retryAfterMs: expect.any(Number),
      },
    ])
    // The hint: after the next heartbeat (within an interval) and half an interval more.
    const hintMs = (wait as Extract<Message.ServerReply, { _tag: "Wait" }>).retryAfterMs
    expect(hintMs).toBeGreaterThanOrEqual(timing.heartbeatIntervalMs / 2)
    expect(hintMs).toBeLessThanOrEqual(1.5 * timing.heartbeatIntervalMs)
    expect(events(waiting.outputs).filter((event) => event._tag === "Refused")).toEqual([])
    // A follower's Reserve for such a seat is answered alike: WaitForShares, not refused.
    const reserveWait = shared.step(
      lead,
      M.receive(
        "s2",
        { _tag: "Reserve", term: 1, client: "late2", seats: 1, reattach: false, heldAt: null },
        atMs,
      ),
    )
    expect(sends(reserveWait.outputs, "Reserved")).toEqual([])
    expect(sends(reserveWait.outputs, "WaitForShares").map((send) => send.message)).toEqual([
      { _tag: "WaitForShares", term: 1, client: "late2", seats: 1, retryAfterMs: hintMs },
    ])
    lead = waiting.state
    atMs += 100
    const reclaim = shared.step(lead, M.timerFired(Machine.tickTimer, atMs))
    expect(heartbeatOf(reclaim.outputs, "s2").shareLimit).toBe(0)
    lead = shared.step(
      reclaim.state,
      M.receive("s2", ack(reclaim.state.leaderState!.seq, 0), atMs + 1),
    ).state
    expect(
      Machine.shareOutstanding(lead.leaderState!.followers.s2!, atMs + 1, timing.leaseMs),
    ).toBe(0)
    const late = shared.step(lead, request("late", atMs + 2))
    expect(replies(late.outputs)[0]).toMatchObject({ _tag: "Granted" })
  })

  it("an election ends every share, and while the leader is unheard a follower grants nothing from it", () => {
    const heartbeat: Message.Peer = leaderHeartbeat({
      authorityUntilMs: 3_250,
      shareLife: 1,
      shareLimit: 3,
    })
    const s2 = follower(heartbeat, 3_000)
    expect(Machine.shareLeft(s2, 3_001)).toBe(3)
    // The leader's authority lapsed (no heartbeat since): the share is not used, the leader is
    // asked instead.
    const unheard = shared.step(s2, request("c1", 3_300))
    expect(events(unheard.outputs).some((event) => event._tag === "Allocated")).toBe(false)
    expect(sends(unheard.outputs, "Reserve")).toHaveLength(1)
    // A candidate of term 2 asks for votes: s2 adopts the term, its share is gone.
    const voted = shared.step(s2, M.receive("s3", { _tag: "VoteRequest", term: 2 }, 3_700))
    expect(voted.state.durable.term).toBe(2)
    expect(Machine.shareLeft(voted.state, 3_701)).toBe(0)
    const during = shared.step(voted.state, request("c2", 3_702))
    expect(events(during.outputs).some((event) => event._tag === "Allocated")).toBe(false)
    expect(replies(during.outputs)[0]).toMatchObject({ _tag: "Denied", reason: "electing" })
    // The new leader's heartbeat: a share counted from zero in term 2 (an old-term limit of 3
    // with a life that is not s2's grants nothing).
    const fresh = shared.step(
      voted.state,
      M.receive("s3", { ...heartbeat, term: 2, authorityUntilMs: 4_000, shareLife: 99 }, 3_800),
    ).state
    expect(fresh.share).toEqual({ term: 2, limit: 0, used: 0 })
    expect(Machine.shareLeft(fresh, 3_801)).toBe(0)
  })

  it("a client holding a seat a follower granted from its share re-attaches at the leader without being counted twice", () => {
    let lead = shared.step(leader(3_000, shared), M.timerFired(Machine.tickTimer, 3_000)).state
    // s2 granted c1 from its share (1 used, no record merged yet), then died.
    lead = shared.step(lead, M.receive("s2", ack(lead.leaderState!.seq, 1), 3_001)).state
    expect(outstanding(lead, 3_002)).toBe(4)
    // Fill every seat that is neither held nor out as a share.
    let seat = 0
    while (status(shared, lead, 3_002).share > 0)
      lead = shared.step(lead, request(`d${++seat}`, 3_002)).state
    expect(seat).toBe(4)
    const beat = signedBeat(9, { validUntilMs: 20_000, leaseUntilMs: 5_000 })
    const reattached = shared.step(lead, fromClient("c1", beat, 3_050))
    expect(replies(reattached.outputs)[0]).toMatchObject({ _tag: "Granted", reattached: true })
    // Its seat left s2's share: 8 seats, 5 held here, 3 out as shares (s2: 1 of 2, s3: 2).
    expect(outstanding(reattached.state, 3_051)).toBe(3)
    expect(Machine.poolSeatsInUse(reattached.state, 3_051, timing.leaseMs)).toBe(5)
    // Another stranger, with no such seat, fits only in seats out as shares: not refused, it
    // is told to wait while the next heartbeats take the shares back.
    const stranger = shared.step(reattached.state, request("d9", 3_052))
    expect(replies(stranger.outputs)).toMatchObject([{ _tag: "Wait", server: "s1", seq: 1 }])
    const reclaim = shared.step(stranger.state, M.timerFired(Machine.tickTimer, 3_100))
    expect(heartbeatOf(reclaim.outputs, "s2").shareLimit).toBe(1)
    expect(heartbeatOf(reclaim.outputs, "s3").shareLimit).toBe(0)
  })

  it("a restarted follower's old share stays counted until its record (restored from disk) is merged", () => {
    let lead = shared.step(leader(3_000, shared), M.timerFired(Machine.tickTimer, 3_000)).state
    lead = shared.step(lead, M.receive("s2", ack(lead.leaderState!.seq, 1), 3_001)).state
    expect(Machine.shareOutstanding(lead.leaderState!.followers.s2!, 3_001, timing.leaseMs)).toBe(2)
    // s2 comes back as life 3_040: the leader fetches its record again and sends it no share.
    lead = shared.step(lead, M.receive("s2", ack(lead.leaderState!.seq, 0, 3_040), 3_050)).state
    const view = lead.leaderState!.followers.s2!
    expect(view.mergedVersion).toBe(-1)
    expect(Machine.shareOutstanding(view, 3_050, timing.leaseMs)).toBe(2)
    const tick = shared.step(lead, M.timerFired(Machine.tickTimer, 3_100))
    expect(heartbeatOf(tick.outputs, "s2")).toMatchObject({ wantRecord: true, shareLife: 1 })
    const merged = shared.step(
      tick.state,
      M.receive(
        "s2",
        {
          _tag: "Record",
          term: 1,
          version: 3_041,
          life: 3_040,
          shareUsed: 0,
          part: 0,
          parts: 1,
          allocations: [{ client: "c1", seats: 1, grantedAtMs: 3_002, expiresAtMs: 5_500 }],
        },
        3_101,
      ),
    ).state
    expect(Machine.shareOutstanding(merged.leaderState!.followers.s2!, 3_101, timing.leaseMs)).toBe(
      0,
    )
    expect(Machine.poolSeatsInUse(merged, 3_101, timing.leaseMs)).toBe(1)
  })
})

describe("the leader's count of seats", () => {
  const unshared = Machine.make({
    servers,
    ...timing,
    crypto: fakeCrypto,
    initialLicense: license(2),
    shareSeatsMax: 0,
  })
  /** Ticks every 100 ms from `fromMs` through `toMs`, both followers acknowledging each. */
  const ticks = (state: Machine.State, fromMs: number, toMs: number) => {
    for (let atMs = fromMs; atMs <= toMs; atMs += 100) {
      state = unshared.step(state, M.timerFired(Machine.tickTimer, atMs)).state
      for (const follower of ["s2", "s3"])
        state = unshared.step(
          state,
          M.receive(follower, leaderAck(state.leaderState!.seq), atMs + 1),
        ).state
    }
    return state
  }
  const reserve = (state: Machine.State, client: string, nowMs: number) => {
    const reserved = unshared.step(
      state,
      M.receive(
        "s2",
        { _tag: "Reserve", term: 1, client, seats: 1, reattach: false, heldAt: null },
        nowMs,
      ),
    )
    const answer = sends(reserved.outputs, "Reserved")[0]!.message
    return { state: reserved.state, refused: answer._tag === "Reserved" ? answer.refused : "?" }
  }

  it("a client granted at one server that asks again at another (its reply came late) is counted once, not refused", () => {
    const granted = unshared.step(
      leader(3_000, unshared),
      fromClient("c1", seatRequest("c1"), 3_000),
    )
    expect(replies(granted.outputs)[0]).toMatchObject({ _tag: "Granted" })
    const second = reserve(granted.state, "c2", 3_010)
    expect(second.refused).toBeNull()
    // Both seats are held; c1 walked to s3, which asks the leader to count it there.
    const again = unshared.step(
      second.state,
      M.receive(
        "s3",
        { _tag: "Reserve", term: 1, client: "c1", seats: 1, reattach: false, heldAt: null },
        3_020,
      ),
    )
    expect(sends(again.outputs, "Reserved")[0]!.message).toMatchObject({ refused: null })
    expect(Machine.poolSeatsInUse(again.state, 3_021, timing.leaseMs)).toBe(2)
    // The pool is really full for anyone else.
    expect(reserve(again.state, "c3", 3_030).refused).toBe("capacity")
  })

  it("a seat reserved for a follower, granted and given back before its record showed it, is free again once the reservation's lease ends", () => {
    let state = leader(3_000, unshared)
    // s2 asks for both seats for c1 and c2: the pool is full.
    const first = reserve(state, "c1", 3_000)
    expect(first.refused).toBeNull()
    const second = reserve(first.state, "c2", 3_010)
    expect(second.refused).toBeNull()
    // Both clients were granted and gave their seats back before s2's next record, which shows
    // neither: the reservations stay counted (the record may have left before the grants)...
    const record: Message.Peer = {
      _tag: "Record",
      term: 1,
      version: 5,
      life: 1,
      shareUsed: 0,
      part: 0,
      parts: 1,
      allocations: [],
    }
    state = unshared.step(second.state, M.receive("s2", record, 3_100)).state
    expect(reserve(state, "c3", 3_150).refused).toBe("capacity")
    // ...but only for the reservations' own lease (2,000 ms), not for as long as s2 keeps its
    // authority: before, the two seats were lost to the pool for good.
    state = ticks(state, 3_200, 5_100)
    expect(reserve(state, "c3", 5_150).refused).toBeNull()
  })

  it("a seat reserved for a follower that is then cut off, with no record of it since, counts for as long as that follower may renew it, not for the reservation's own lease", () => {
    // s2 asks for both seats, for c1 and c2: the pool is full. It grants them and is cut off
    // before its next record: from here only s3 acknowledges the leader.
    const first = reserve(leader(3_000, unshared), "c1", 3_000)
    let state = reserve(first.state, "c2", 3_010).state
    for (let atMs = 3_100; atMs <= 5_100; atMs += 100) {
      state = unshared.step(state, M.timerFired(Machine.tickTimer, atMs)).state
      state = unshared.step(
        state,
        M.receive("s3", leaderAck(state.leaderState!.seq), atMs + 1),
      ).state
    }
    // The reservations' own lease (2,000 ms) is over, but s2 may renew c1 and c2 until a lease
    // past the authority it was sent: the seats are still held there.
    const renewableUntilMs = state.leaderState!.followers.s2!.authoritySentUntilMs + timing.leaseMs
    expect(renewableUntilMs).toBeGreaterThan(5_150)
    expect(Machine.poolSeatsInUse(state, 5_150, timing.leaseMs)).toBe(2)
    expect(reserve(state, "c3", 5_150).refused).toBe("capacity")
    // (The leader goes on sending s2 authority while it leads, as it does for the seats s2's
    // records showed: only a record from s2 that passes the reservations over, or their lease
    // running out with s2 down to the leader for good, frees them; see the test above.)
  })

  it("a seat a follower got from the leader and its client gave back is free at the leader at once, not a lease later", () => {
    let lead = leader(3_000, unshared)
    // s2, a follower under s1's authority with no share, asks for c1's seat and grants it.
    let s2 = unshared.step(
      unshared.init({ self: "s2", peers: ["s1", "s3"], nowMs: 0 }).state,
      M.receive("s1", leaderHeartbeat({ authorityUntilMs: 3_300 }), 2_990),
    ).state
    const asked = unshared.step(s2, fromClient("c1", seatRequest("c1"), 3_000))
    const ask = sends(asked.outputs, "Reserve")[0]!
    const reserved = unshared.step(lead, M.receive("s2", ask.message, 3_002))
    lead = reserved.state
    const answer = sends(reserved.outputs, "Reserved")[0]!
    s2 = unshared.step(asked.state, M.receive("s1", answer.message, 3_004)).state
    expect(HashMap.has(s2.record, "c1")).toBe(true)
    // The leader also grants c2 itself: the license (2 seats) is full.
    lead = unshared.step(lead, fromClient("c2", seatRequest("c2"), 3_010)).state
    expect(reserve(lead, "c3", 3_020).refused).toBe("capacity")
    // c1 gives its seat back at s2, which tells the leader at once, before any record.
    const released = unshared.step(
      s2,
      fromClient("c1", { _tag: "Release", client: "c1", seq: 2 }, 3_030),
    )
    const told = sends(released.outputs, "Unused")
    expect(told.map((send) => send.to)).toEqual(["s1"])
    lead = unshared.step(lead, M.receive("s2", told[0]!.message, 3_032)).state
    // The seat is free for another client now (it stayed counted until 5,002 before).
    expect(Machine.poolSeatsInUse(lead, 3_040, timing.leaseMs)).toBe(1)
    expect(reserve(lead, "c3", 3_040).refused).toBeNull()
  })

  it("at the edge of the capacity, a lease the last tick found ending but renewed since still counts", () => {
    // Eight seats, so that the leader looks among the leases ending rather than counting all.
    const wide = Machine.make({
      servers,
      ...timing,
      crypto: fakeCrypto,
      initialLicense: license(8),
      shareSeatsMax: 0,
    })
    let state = leader(3_000, wide)
    const granted = wide.step(state, fromClient("c1", seatRequest("c1"), 3_000))
    const grant = replies(granted.outputs).find((reply) => reply._tag === "Granted")
    if (grant?._tag !== "Granted") throw new Error("c1 was not granted")
    state = granted.state
    const tick = (atMs: number) => {
      state = wide.step(state, M.timerFired(Machine.tickTimer, atMs)).state
      for (const follower of ["s2", "s3"])
        state = wide.step(
          state,
          M.receive(follower, leaderAck(state.leaderState!.seq), atMs + 1),
        ).state
    }
    for (let atMs = 3_100; atMs <= 3_500; atMs += 100) tick(atMs)
    for (let index = 2; index <= 8; index++)
      state = wide.step(state, fromClient(`c${index}`, seatRequest(`c${index}`), 3_500)).state
    // The 4,900 tick finds c1's lease (to 5,000) ending; c1 renews it at 4,950, to 6,950.
    for (let atMs = 3_600; atMs <= 4_900; atMs += 100) tick(atMs)
    expect(state.leaderState!.endingSoon).toEqual(["c1"])
    const beat: Beat = {
      _tag: "Beat",
      client: "c1",
      seq: 2,
      token: grant.token,
      leaseUntilMs: 5_000,
    }
    state = wide.step(state, fromClient("c1", beat, 4_950)).state
    // Full still at 5,010: the license is never exceeded for a lease listed as ending.
    expect(Machine.seatsCounted(state, 5_010, timing.leaseMs)).toBe(8)
    const asked = wide.step(
      state,
      M.receive(
        "s2",
        { _tag: "Reserve", term: 1, client: "c9", seats: 1, reattach: false, heldAt: null },
        5_010,
      ),
    )
    expect(sends(asked.outputs, "Reserved")[0]!.message).toMatchObject({ refused: "capacity" })
  })

  it("never grants above the license, and counts a lease that ran out since the last tick as free", () => {
    let state = leader(3_000, unshared)
    state = step(state, fromClient("c1", seatRequest("c1"), 3_000)).state
    state = ticks(state, 3_100, 3_500)
    state = step(state, fromClient("c2", seatRequest("c2"), 3_500)).state
    expect(Machine.poolSeatsInUse(state, 3_501, timing.leaseMs)).toBe(2)
    // Full: a follower's request is refused, and another client's at the leader too.
    const full = reserve(state, "c3", 3_502)
    expect(full.refused).toBe("capacity")
    const denied = step(full.state, fromClient("c4", seatRequest("c4"), 3_503))
    expect(replies(denied.outputs)[0]).toMatchObject({ _tag: "Denied", reason: "capacity" })
    // c1's lease ends at 5,000; the last tick before is at 4,900, so the running tally still
    // counts c1 at 5,010: the seat is found free among the allocations that tick found ending.
    state = ticks(denied.state, 3_600, 4_900)
    expect(state.leaderState!.tally.total).toBe(2)
    const freed = reserve(state, "c3", 5_010)
    expect(freed.refused).toBeNull()
    expect(Machine.poolSeatsInUse(freed.state, 5_011, timing.leaseMs)).toBe(2)
    // Full again: c2 and c3.
    expect(reserve(freed.state, "c4", 5_012).refused).toBe("capacity")
    // The next tick drops c1 from the tally: it is exact again.
    const swept = ticks(freed.state, 5_100, 5_100)
    expect(swept.leaderState!.tally.total).toBe(2)
    expect(Machine.tallyOf(swept.record, swept.leaderState!.pool)).toEqual(swept.leaderState!.tally)
  })
})
