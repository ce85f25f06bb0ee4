import { describe, expect, it } from "@effect/vitest"
import { Machine as M } from "@understudy/machine"
import { Result, Schema } from "effect"
import * as Machine from "../src/Machine.ts"
import * as Message from "../src/Message.ts"
import * as Replication from "../src/Replication.ts"

type Req = { readonly add: number }
type St = Machine.State<number, Req, number>
type Msg = Message.Message<Req>
type Ev = Machine.Event<number>

// s<i> has index i.
const servers = [1, 2, 3, 4].map((i) => ({
  id: `s${i}`,
  capacity: { cpu: 10 - i, bandwidthMbps: 1 },
}))
const ids = servers.map((server) => server.id)
const config: Machine.Config<number, Req, number> = {
  servers,
  detectionPeriodMs: 100,
  inquiryTimeoutMs: 300,
  baseDelayMs: 50,
  initial: 0,
  apply: (state, request) => [state + request.add, state + request.add],
}
const machine = Machine.make(config)

const boot = (self: string, nowMs = 0) =>
  machine.init({ self, peers: ids.filter((id) => id !== self), nowMs })
const recv = (state: St, from: string, message: Msg, nowMs = 0) =>
  machine.step(state, M.receive(from, message, nowMs))
const fire = (state: St, timer: string, nowMs = 0) =>
  machine.step(state, M.timerFired(timer, nowMs))
const events = (result: M.Result<St, Msg, Ev>) => M.events(result.outputs)
const tags = (result: M.Result<St, Msg, Ev>) => events(result).map((event) => event._tag)
const sent = (result: M.Result<St, Msg, Ev>) =>
  result.outputs.flatMap((output) =>
    output._tag === "Send" || output._tag === "Broadcast" ? [output.message] : [],
  )
const epoch = (term: number, index: number) => Machine.epochOf(term, index)

/** Every server up, messages delivered at once in order: a tiny synchronous network. */
const cluster = (members = ids, m: Machine.StaggeredElection<number, Req, number> = machine) => {
  const states = new Map<string, St>()
  const log: Array<{ node: string; event: Ev }> = []
  let queue: Array<{ from: string; to: string; message: Msg }> = []
  const down = new Set<string>()
  const absorb = (node: string, result: M.Result<St, Msg, Ev>) => {
    states.set(node, result.state)
    for (const output of result.outputs) {
      if (output._tag === "Send") queue.push({ from: node, to: output.to, message: output.message })
      if (output._tag === "Broadcast") {
        for (const to of members)
          if (to !== node) queue.push({ from: node, to, message: output.message })
      }
      if (output._tag === "Emit") log.push({ node, event: output.event })
    }
  }
  const deliver = (nowMs: number) => {
    // Bounded: a protocol that never goes quiet fails the test rather than hanging it.
    for (let round = 0; round < 10_000 && queue.length > 0; round++) {
      const batch = queue
      queue = []
      for (const { from, to, message } of batch) {
        if (down.has(to) || down.has(from)) continue
        absorb(to, m.step(states.get(to)!, M.receive(from, message, nowMs)))
      }
    }
  }
  const start = (node: string, nowMs: number) =>
    absorb(node, m.init({ self: node, peers: members.filter((id) => id !== node), nowMs }))
  for (const node of members) start(node, 0)
  return {
    states,
    log,
    down,
    deliver,
    step: (node: string, input: M.Input<Msg, Machine.Command<Req>>) => {
      absorb(node, m.step(states.get(node)!, input))
      deliver(input.nowMs)
    },
    /** A crash and restart: `init` afresh, nothing kept. */
    restart: (node: string, nowMs: number) => {
      start(node, nowMs)
      deliver(nowMs)
    },
  }
}

/**
 * A cold-started cluster: s1 declares first (smallest index, base delay), all synced. s1
 * finishes its sync with two replies, so s4 is caught up only after a detection round (its
 * probes hear of the group from three non-amnesiac servers, then s1 names it in a Replicate).
 */
const running = (m: Machine.StaggeredElection<number, Req, number> = machine) => {
  const net = cluster(ids, m)
  net.deliver(0)
  net.step("s1", M.timerFired(Machine.electionTimer, 50))
  for (const id of ["s2", "s3", "s4", "s1"]) net.step(id, M.timerFired(Machine.detectTimer, 55))
  return net
}

describe("StaggeredElection machine", () => {
  it("validates its configuration with typed errors", () => {
    expect(Machine.validate({ ...config, baseDelayMs: 0 })?._tag).toBe("InvalidConfig")
    expect(Machine.validate({ ...config, servers: [...servers, servers[0]!] })?._tag).toBe(
      "InvalidGroup",
    )
    expect(() => Machine.make({ ...config, delayWindow: 1.5 })).toThrow(/delayWindow/)
    expect(Machine.validate(config)).toBeUndefined()
    expect(Machine.validate({ ...config, lease: { clockDriftMax: 0.5 } })?.message).toMatch(
      /clockDriftMax/,
    )
    expect(Machine.validate({ ...config, lease: { durationMs: -1 } })?.message).toMatch(
      /lease.durationMs/,
    )
    expect(Machine.validate({ ...config, lease: {} })).toBeUndefined()
    // The default lease's wait fits in the inquiry time-out.
    const lease = Machine.leaseOf({ ...config, lease: {} })!
    expect(lease.waitMs).toBeLessThanOrEqual(config.inquiryTimeoutMs)
    expect(lease.durationMs).toBeGreaterThan(config.inquiryTimeoutMs * 0.9)
  })

  it("a started server waits with its election timer and probes every peer at once", () => {
    const started = boot("s3")
    expect(started.state.role).toBe("waiting")
    expect(sent(started).filter((message) => message._tag === "Probe")).toHaveLength(3)
    const waiting = events(started)[0]
    // Nothing measured yet: s1 and s2 before s3, each pair unknown (inquiryTimeoutMs).
    expect(waiting).toMatchObject({ _tag: "Waiting", failed: undefined, delayMs: 50 + 300 + 300 })
    expect(started.outputs).toContainEqual(M.setTimer(Machine.electionTimer, 650))
  })

  it("claims 24–25: the detection timer is equally periodic, and every tick probes every peer", () => {
    let state = boot("s2").state
    for (let tick = 1; tick <= 3; tick++) {
      const result = fire(state, Machine.detectTimer, tick * 100)
      expect(result.outputs).toContainEqual(M.setTimer(Machine.detectTimer, 100))
      expect(sent(result).filter((message) => message._tag === "Probe")).toHaveLength(3)
      state = result.state
    }
    expect(state.probeSeq).toBe(4)
  })

  it("claims 8, 16–17: cold start, the smallest index declares with a first message, the others acknowledge", () => {
    const net = running()
    expect(net.states.get("s1")!.role).toBe("master")
    expect(net.log).toContainEqual({
      node: "s1",
      event: { _tag: "BecameMaster", epoch: epoch(1, 1) },
    })
    for (const id of ["s2", "s3", "s4"]) {
      const state = net.states.get(id)!
      expect(state).toMatchObject({ role: "backup", master: "s1", epoch: epoch(1, 1) })
      expect(net.log).toContainEqual({
        node: id,
        event: { _tag: "Acknowledged", master: "s1", epoch: epoch(1, 1) },
      })
    }
    expect(net.log.some(({ event }) => event._tag === "Synced")).toBe(true)
  })

  it("claim 17: acknowledging a declaration cancels the election timer", () => {
    const waiting = boot("s3").state
    const result = recv(waiting, "s2", { _tag: "Declare", epoch: epoch(1, 2), index: 2 })
    expect(result.state).toMatchObject({ role: "backup", master: "s2" })
    expect(result.outputs).toContainEqual(M.cancelTimer(Machine.electionTimer))
  })

  it("claims 4–5, 7, 9: an inquiry unanswered within the time-out: the master failed, wait with the election delay", () => {
    let s3 = recv(boot("s3").state, "s1", { _tag: "Declare", epoch: epoch(1, 1), index: 1 }).state
    const tick = fire(s3, Machine.detectTimer, 100)
    // The probe to the master is the inquiry: its time-out is set after sending it.
    expect(tick.outputs).toContainEqual(M.setTimer(Machine.inquiryTimer, 300))
    s3 = tick.state
    // A later tick does not restart the time-out.
    const again = fire(s3, Machine.detectTimer, 200)
    expect(again.outputs).not.toContainEqual(M.setTimer(Machine.inquiryTimer, 300))
    const timedOut = fire(again.state, Machine.inquiryTimer, 400)
    expect(timedOut.state).toMatchObject({ role: "waiting", failed: "s1", master: undefined })
    // Backups without s1: s2 before s3, d(s2, s3) unknown = 300.
    expect(events(timedOut)[0]).toMatchObject({ _tag: "Waiting", failed: "s1", delayMs: 350 })
    expect(timedOut.outputs).toContainEqual(M.setTimer(Machine.electionTimer, 350))
    const declared = fire(timedOut.state, Machine.electionTimer, 750)
    expect(declared.state.role).toBe("master")
  })

  it("claims 4–5: a reply within the time-out keeps the master", () => {
    const s3 = recv(boot("s3").state, "s1", { _tag: "Declare", epoch: epoch(1, 1), index: 1 }).state
    const tick = fire(s3, Machine.detectTimer, 100)
    const reply = recv(
      tick.state,
      "s1",
      {
        _tag: "ProbeReply",
        epoch: epoch(1, 1),
        index: 1,
        seq: tick.state.probeSeq,
        master: "s1",
        role: "master",
      },
      130,
    )
    expect(reply.outputs).toContainEqual(M.cancelTimer(Machine.inquiryTimer))
    expect(reply.state.samples.s1).toEqual([30])
    expect(fire(reply.state, Machine.inquiryTimer, 400).state.role).toBe("backup")
  })

  it("claim 8: declaring sets the role to master and broadcasts the first message with a new epoch", () => {
    const waiting = boot("s2").state
    const result = fire({ ...waiting, term: 4 }, Machine.electionTimer, 400)
    expect(result.state).toMatchObject({ role: "master", term: 5, epoch: epoch(5, 2) })
    expect(result.outputs).toContainEqual(
      M.broadcast<Msg>({ _tag: "Declare", epoch: epoch(5, 2), index: 2 }),
    )
    expect(tags(result)).toContain("BecameMaster")
  })

  it("claims 18, 22: a master that receives a declaration from a smaller index accepts it", () => {
    const s2 = fire(boot("s2").state, Machine.electionTimer, 400).state
    const result = recv(s2, "s1", { _tag: "Declare", epoch: epoch(2, 1), index: 1 })
    expect(result.state).toMatchObject({ role: "backup", master: "s1", epoch: epoch(2, 1) })
    expect(events(result)).toContainEqual({ _tag: "Demoted", master: "s1", epoch: epoch(2, 1) })
  })

  it("claim 23: a master that wins revokes with a second message carrying both indices", () => {
    const s1 = fire(boot("s1").state, Machine.electionTimer, 50).state
    expect(s1.epoch).toBe(epoch(1, 1))
    const result = recv(s1, "s3", { _tag: "Declare", epoch: epoch(2, 3), index: 3 })
    expect(result.state).toMatchObject({ role: "master", term: 3, epoch: epoch(3, 1) })
    expect(result.outputs).toContainEqual(
      M.broadcast<Msg>({ _tag: "Revoke", epoch: epoch(3, 1), index: 1, revokedIndex: 3 }),
    )
    expect(events(result)).toContainEqual({ _tag: "Revoked", revokedIndex: 3, epoch: epoch(3, 1) })
    // The revoked master and a backup of it accept the second message.
    const s3 = fire(boot("s3").state, Machine.electionTimer, 700).state
    const revoke: Msg = { _tag: "Revoke", epoch: epoch(3, 1), index: 1, revokedIndex: 3 }
    expect(recv({ ...s3, epoch: epoch(2, 3) }, "s1", revoke).state).toMatchObject({
      role: "backup",
      master: "s1",
    })
    const s4 = recv(boot("s4").state, "s3", { _tag: "Declare", epoch: epoch(2, 3), index: 3 }).state
    expect(recv(s4, "s1", revoke).state).toMatchObject({ role: "backup", master: "s1" })
  })

  it("the revoke path: a lower-index server cut off from the group's new master takes mastership back", () => {
    // s1 is master at term 1. s2 stops hearing it (a one-way cut), detects it failed and
    // declares at term 2. s1 wins the comparison and revokes with a second message; every
    // server, s2 included, ends up backup of s1 at term 3.
    const net = running()
    const s2 = net.states.get("s2")!
    const waiting = fire(fire(s2, Machine.detectTimer, 100).state, Machine.inquiryTimer, 400)
    net.states.set("s2", waiting.state)
    net.step("s2", M.timerFired(Machine.electionTimer, 800))
    expect(net.log.filter(({ event }) => event._tag === "Revoked")).toEqual([
      { node: "s1", event: { _tag: "Revoked", revokedIndex: 2, epoch: epoch(3, 1) } },
    ])
    expect(net.states.get("s1")).toMatchObject({ role: "master", epoch: epoch(3, 1) })
    for (const id of ["s2", "s3", "s4"]) {
      expect(net.states.get(id)).toMatchObject({ role: "backup", master: "s1", epoch: epoch(3, 1) })
    }
  })

  it("epochs: a message older than the receiver's epoch is ignored and changes nothing", () => {
    const s3 = recv(boot("s3").state, "s1", { _tag: "Declare", epoch: epoch(2, 1), index: 1 }).state
    const result = recv(s3, "s2", { _tag: "Declare", epoch: epoch(1, 2), index: 2 })
    expect(result.state).toBe(s3)
    expect(events(result)).toEqual([{ _tag: "Ignored", from: "s2", reason: "stale-epoch" }])
    // A stale probe is still answered with the current epoch, so its sender catches up.
    const probe = recv(s3, "s2", {
      _tag: "Probe",
      epoch: 0,
      index: 2,
      seq: 1,
      master: null,
      row: {},
    })
    expect(probe.state).toBe(s3)
    expect(sent(probe)).toEqual([
      {
        _tag: "ProbeReply",
        epoch: epoch(2, 1),
        index: 3,
        seq: 1,
        master: "s1",
        role: "backup",
        history: false,
        amnesiac: true,
      },
    ])
  })

  it("a restarted server acknowledges the master from its first probe round's replies", () => {
    const restarted = boot("s1", 5_000)
    const reply = recv(
      restarted.state,
      "s3",
      {
        _tag: "ProbeReply",
        epoch: epoch(4, 2),
        index: 3,
        seq: 1,
        master: "s2",
        role: "backup",
      },
      5_004,
    )
    expect(reply.state).toMatchObject({ role: "backup", master: "s2", epoch: epoch(4, 2), term: 4 })
    expect(reply.outputs).toContainEqual(M.cancelTimer(Machine.electionTimer))
  })

  it("unknown senders and wrong indices are ignored with no state change", () => {
    const s3 = boot("s3").state
    const stranger = recv(s3, "s9", { _tag: "Declare", epoch: epoch(9, 1), index: 1 })
    expect(stranger.state).toBe(s3)
    expect(events(stranger)).toEqual([{ _tag: "Ignored", from: "s9", reason: "unknown-sender" }])
    const forged = recv(s3, "s4", { _tag: "Declare", epoch: epoch(9, 1), index: 1 })
    expect(forged.state).toBe(s3)
    expect(events(forged)).toEqual([{ _tag: "Ignored", from: "s4", reason: "wrong-index" }])
  })

  it("replication: a request commits only when every live backup and a majority hold it; all apply it", () => {
    const net = running()
    net.step(
      "s1",
      M.command({ _tag: "Submit", clientId: "c", requestId: 1, request: { add: 5 } }, 60),
    )
    expect(net.log).toContainEqual({
      node: "s1",
      event: { _tag: "Answered", clientId: "c", requestId: 1, result: 5 },
    })
    // The backups apply it once the next Replicate tells them the commit point.
    net.step("s1", M.timerFired(Machine.detectTimer, 100))
    for (const id of ids) expect(net.states.get(id)!.replica.state).toBe(5)

    // A minority side: s1 with only s2 can never commit (2 of 4 is not a majority).
    net.down.add("s3")
    net.down.add("s4")
    net.step(
      "s1",
      M.command({ _tag: "Submit", clientId: "c", requestId: 2, request: { add: 1 } }, 110),
    )
    net.step("s1", M.timerFired(Machine.detectTimer, 200))
    expect(net.log.filter(({ event }) => event._tag === "Answered")).toHaveLength(1)
    expect(net.states.get("s1")!.replica.commitSeq).toBeLessThan(
      net.states.get("s1")!.replica.log.length,
    )
  })

  it("replication: a retried request is answered again from the table, applied once", () => {
    const net = running()
    const submit = M.command<Machine.Command<Req>>(
      { _tag: "Submit", clientId: "c", requestId: 7, request: { add: 2 } },
      60,
    )
    net.step("s1", submit)
    net.step("s1", { ...submit, nowMs: 70 })
    const answers = net.log.filter(({ event }) => event._tag === "Answered")
    expect(answers).toHaveLength(2)
    expect(answers.every(({ event }) => event._tag === "Answered" && event.result === 2)).toBe(true)
    expect(net.states.get("s1")!.replica.state).toBe(2)
    expect(
      net.states.get("s1")!.replica.log.filter((entry) => entry._tag === "Request"),
    ).toHaveLength(1)
    net.step(
      "s1",
      M.command({ _tag: "Submit", clientId: "c", requestId: 6, request: { add: 9 } }, 80),
    )
    expect(net.log.at(-1)!.event).toMatchObject({ _tag: "Rejected", reason: "stale-request" })
  })

  it("new-master sync: the new master adopts a backup's longer log, then serves queued requests", () => {
    const net = running()
    net.step(
      "s1",
      M.command({ _tag: "Submit", clientId: "c", requestId: 1, request: { add: 1 } }, 60),
    )
    // s1 appends request 2 and reaches only s2 before it dies: uncommitted, on s2 alone.
    net.down.add("s3")
    net.down.add("s4")
    net.step(
      "s1",
      M.command({ _tag: "Submit", clientId: "c", requestId: 2, request: { add: 10 } }, 70),
    )
    net.down.clear()
    net.down.add("s1")
    expect(net.states.get("s2")!.replica.log).toHaveLength(net.states.get("s1")!.replica.log.length)
    expect(net.states.get("s4")!.replica.log.length).toBeLessThan(
      net.states.get("s2")!.replica.log.length,
    )
    // s4 (not s2) declares: it must sync from the majority, which includes s2's longer log.
    net.step("s4", M.timerFired(Machine.detectTimer, 100))
    net.states.set("s4", fire(net.states.get("s4")!, Machine.inquiryTimer, 400).state)
    expect(net.states.get("s4")!.role).toBe("waiting")
    net.step("s4", M.timerFired(Machine.electionTimer, 900))
    const s4 = net.states.get("s4")!
    expect(s4.role).toBe("master")
    expect(s4.leader?.phase).toBe("ready")
    expect(s4.replica.state).toBe(11)
    expect(net.log).toContainEqual({
      node: "s4",
      event: { _tag: "Answered", clientId: "c", requestId: 2, result: 11 },
    })
  })

  it("a syncing master queues requests and serves them once synced", () => {
    const s1 = fire(boot("s1").state, Machine.electionTimer, 50)
    expect(s1.state.leader?.phase).toBe("syncing")
    const queued = machine.step(
      s1.state,
      M.command({ _tag: "Submit", clientId: "c", requestId: 1, request: { add: 1 } }, 60),
    )
    expect(queued.state.leader?.queue).toHaveLength(1)
    expect(tags(queued)).toEqual([])
    const backup = machine.step(
      boot("s2").state,
      M.command({ _tag: "Submit", clientId: "c", requestId: 1, request: { add: 1 } }, 60),
    )
    expect(events(backup)[0]).toMatchObject({ _tag: "Rejected", reason: "not-master" })
  })

  it("every message round-trips through the JSON codec; garbage is a typed error", () => {
    const codec = Message.codec(Schema.Struct({ add: Schema.Int }))
    const messages: Array<Msg> = [
      { _tag: "Probe", epoch: 1, index: 1, seq: 2, master: null, row: { s2: 3.5 } },
      { _tag: "ProbeReply", epoch: 1, index: 1, seq: 2, master: "s1", role: "waiting" },
      { _tag: "Declare", epoch: 4, index: 2 },
      { _tag: "Revoke", epoch: 5, index: 1, revokedIndex: 2 },
      {
        _tag: "Replicate",
        epoch: 5,
        index: 1,
        prevSeq: 0,
        prevEpoch: 0,
        entries: [
          { _tag: "Noop", seq: 1, epoch: 5 },
          { _tag: "Request", seq: 2, epoch: 5, clientId: "c", requestId: 1, request: { add: 1 } },
        ],
        commitSeq: 0,
      },
      { _tag: "Ack", epoch: 5, index: 2, ok: true, lastSeq: 2 },
      { _tag: "SyncRequest", epoch: 5, index: 1, fromSeq: 1 },
      {
        _tag: "SyncReply",
        epoch: 5,
        index: 2,
        fromSeq: 1,
        entries: [],
        lastSeq: 0,
        lastEpoch: 0,
        complete: true,
      },
    ]
    for (const message of messages) {
      const bytes = Result.getOrThrow(codec.encode(message))
      expect(Result.getOrThrow(codec.decode(bytes))).toEqual(message)
    }
    const bad = codec.decode(new TextEncoder().encode('{"_tag":"Declare","epoch":-1,"index":1}'))
    expect(Result.isFailure(bad)).toBe(true)
  })

  describe("read index: a master answers a read only once a majority still follows it", () => {
    const read = (readId: number, nowMs: number) =>
      M.command<Machine.Command<Req>>({ _tag: "Read", readId }, nowMs)
    const readEvents = (net: ReturnType<typeof cluster>, node: string, readId: number) =>
      net.log
        .filter((entry) => entry.node === node)
        .map((entry) => entry.event)
        .filter(
          (event) =>
            (event._tag === "ReadConfirmed" || event._tag === "ReadRejected") &&
            event.readId === readId,
        )

    it("a live master confirms a read after one round; a backup refuses it", () => {
      const net = running()
      net.step("s1", read(1, 60))
      expect(readEvents(net, "s1", 1)).toEqual([{ _tag: "ReadConfirmed", readId: 1 }])
      net.step("s2", read(2, 60))
      expect(readEvents(net, "s2", 2)).toEqual([
        { _tag: "ReadRejected", readId: 2, reason: "not-master" },
      ])
    })

    it("without a majority answering, the read waits: a master cut off from all but one backup", () => {
      const net = running()
      net.down.add("s3")
      net.down.add("s4")
      net.step("s1", read(1, 60))
      expect(readEvents(net, "s1", 1)).toEqual([])
    })

    it("a master paused while the others elected and committed never answers from its old state", () => {
      const net = running()
      net.step(
        "s1",
        M.command<Machine.Command<Req>>(
          { _tag: "Submit", clientId: "c", requestId: 1, request: { add: 5 } },
          60,
        ),
      )
      for (const id of ids) net.step(id, M.timerFired(Machine.detectTimer, 100))
      expect(net.states.get("s1")!.replica.state).toBe(5)
      // s1 freezes (no input reaches it, it sends nothing); s2 finds it failed and declares.
      net.down.add("s1")
      net.step("s2", M.timerFired(Machine.detectTimer, 200))
      net.step("s2", M.timerFired(Machine.inquiryTimer, 500))
      net.step("s2", M.timerFired(Machine.electionTimer, 1_000))
      expect(net.states.get("s2")).toMatchObject({ role: "master", leader: { phase: "ready" } })
      net.step(
        "s2",
        M.command<Machine.Command<Req>>(
          { _tag: "Submit", clientId: "c", requestId: 2, request: { add: 7 } },
          1_010,
        ),
      )
      for (const id of ["s2", "s3", "s4"]) net.step(id, M.timerFired(Machine.detectTimer, 1_100))
      expect(net.states.get("s2")!.replica.state).toBe(12)
      // s1 resumes still believing it is master, with 5 applied: its read must not be answered.
      net.down.delete("s1")
      expect(net.states.get("s1")).toMatchObject({ role: "master", replica: { state: 5 } })
      net.step("s1", read(7, 5_000))
      expect(readEvents(net, "s1", 7)).toEqual([])
      // Its next probe round tells it of s2's epoch: it leaves its old one (here it wins on
      // index and revokes, claim 23) and refuses the read; it reads again at its new epoch.
      const oldEpoch = net.states.get("s1")!.epoch
      net.step("s1", M.timerFired(Machine.detectTimer, 5_050))
      expect(net.states.get("s1")!.epoch).not.toBe(oldEpoch)
      expect(readEvents(net, "s1", 7)).toEqual([
        { _tag: "ReadRejected", readId: 7, reason: "not-master" },
      ])
      for (const id of ids) net.step(id, M.timerFired(Machine.detectTimer, 5_100))
      const master = ids.find((id) => net.states.get(id)!.role === "master")!
      net.step(master, read(8, 5_150))
      expect(readEvents(net, master, 8)).toEqual([{ _tag: "ReadConfirmed", readId: 8 }])
      expect(net.states.get(master)!.replica.state).toBe(12)
    })
  })

  describe("leader lease: reads without a round while a majority's acks are fresh", () => {
    const leased = Machine.make({ ...config, lease: {} })
    const { durationMs, waitMs } = Machine.leaseOf({ ...config, lease: {} })!
    const read = (readId: number, nowMs: number) =>
      M.command<Machine.Command<Req>>({ _tag: "Read", readId }, nowMs)
    const confirmed = (net: ReturnType<typeof cluster>, readId: number) =>
      net.log.some(({ event }) => event._tag === "ReadConfirmed" && event.readId === readId)

    /**
     * Running: s1's sync is done once the leases its servers may have granted before they
     * started ran out (a cold start cannot tell a restart); then s1's heartbeat rounds at 310
     * (catching up the backups) and 320, acknowledged by all.
     */
    const leasing = () => {
      const net = running(leased)
      expect(net.states.get("s1")!.leader!.phase).toBe("syncing")
      net.step("s1", M.timerFired(Machine.leaseTimer, waitMs))
      expect(net.states.get("s1")!.leader!.phase).toBe("ready")
      for (const nowMs of [310, 320]) {
        for (const id of ids) net.step(id, M.timerFired(Machine.detectTimer, nowMs))
      }
      return net
    }

    it("within the lease a read is confirmed at once, with no backup reachable; after it, only by a round", () => {
      const net = leasing()
      expect(net.states.get("s1")!.leader!.leaseUntilMs).toBe(320 + durationMs)
      for (const id of ["s2", "s3", "s4"]) net.down.add(id)
      net.step("s1", read(1, 330))
      expect(confirmed(net, 1)).toBe(true)
      net.step("s1", read(2, 320 + durationMs))
      expect(confirmed(net, 2)).toBe(false)
      for (const id of ["s2", "s3", "s4"]) net.down.delete(id)
      net.step("s1", read(3, 320 + durationMs + 1))
      // A round begun after the read, acknowledged by a majority: both waiting reads confirmed.
      expect(confirmed(net, 2) && confirmed(net, 3)).toBe(true)
    })

    it("a new master answers nothing until its predecessor's lease ran out on its clock", () => {
      const net = leasing()
      net.down.add("s1")
      net.step("s2", M.timerFired(Machine.detectTimer, 400))
      net.step("s2", M.timerFired(Machine.inquiryTimer, 401))
      net.step("s2", M.timerFired(Machine.electionTimer, 410))
      // Every server of its sync acknowledged s1's round at 320: that lease may be held until
      // 320 + wait on s2's clock (s1's clock slow, s2's fast).
      const waiting = net.log.filter(({ event }) => event._tag === "AwaitingLease")
      expect(waiting.at(-1)).toEqual({
        node: "s2",
        event: { _tag: "AwaitingLease", untilMs: 320 + waitMs },
      })
      expect(net.states.get("s2")).toMatchObject({ role: "master", leader: { phase: "syncing" } })
      net.step(
        "s2",
        M.command<Machine.Command<Req>>(
          { _tag: "Submit", clientId: "c", requestId: 1, request: { add: 5 } },
          420,
        ),
      )
      net.step("s2", read(1, 430))
      expect(net.log.some(({ event }) => event._tag === "Answered")).toBe(false)
      expect(confirmed(net, 1)).toBe(false)
      net.step("s2", M.timerFired(Machine.leaseTimer, 320 + waitMs))
      expect(net.states.get("s2")!.leader!.phase).toBe("ready")
      expect(net.log.some(({ event }) => event._tag === "Answered")).toBe(true)
    })
  })

  describe("amnesia: a restarted server holds nothing until a master catches it up", () => {
    const submit = (requestId: number, add: number, nowMs: number) =>
      M.command<Machine.Command<Req>>(
        { _tag: "Submit", clientId: "c", requestId, request: { add } },
        nowMs,
      )
    const tickAll = (net: ReturnType<typeof cluster>, nowMs: number, members = ids) => {
      for (const id of members)
        if (!net.down.has(id)) net.step(id, M.timerFired(Machine.detectTimer, nowMs))
    }

    it("a true cold start: every server amnesiac with an empty log, the first master syncs from their replies", () => {
      const net = cluster()
      net.deliver(0)
      for (const id of ids)
        expect(net.states.get(id)).toMatchObject({ amnesiac: true, history: false })
      const declared = machine.step(net.states.get("s1")!, M.timerFired(Machine.electionTimer, 50))
      // Two amnesiac, empty replies (and s1 itself) make the majority of four: no history anywhere.
      let s1 = declared.state
      for (const from of ["s2", "s3"]) {
        s1 = recv(s1, from, {
          _tag: "SyncReply",
          epoch: epoch(1, 1),
          index: Number(from.slice(1)),
          fromSeq: 1,
          entries: [],
          lastSeq: 0,
          lastEpoch: 0,
          complete: true,
          amnesiac: true,
          history: false,
          incarnation: 0,
          commitSeq: 0,
        }).state
      }
      expect(s1).toMatchObject({
        role: "master",
        amnesiac: false,
        leader: { phase: "ready", cold: true },
      })
      // In the cluster the same happens, and the cold start's backups are caught up by its no-op.
      net.step("s1", M.timerFired(Machine.electionTimer, 50))
      expect(net.states.get("s1")!.replica.commitSeq).toBe(1)
      expect(net.states.get("s2")).toMatchObject({
        amnesiac: false,
        replica: { log: [{ seq: 1 }] },
      })
    })

    it("with history, an amnesiac's sync reply does not count towards the sync majority", () => {
      const net = running()
      net.step("s1", submit(1, 5, 60))
      tickAll(net, 100)
      expect(net.states.get("s3")!.replica.state).toBe(5)
      // s3 and s4 restart (empty), then s1 dies; s2 declares: only itself counts, 1 of 4.
      net.restart("s3", 1_000)
      net.restart("s4", 1_000)
      net.down.add("s1")
      const s2 = net.states.get("s2")!
      net.states.set(
        "s2",
        fire(fire(s2, Machine.detectTimer, 1_100).state, Machine.inquiryTimer, 1_400).state,
      )
      net.step("s2", M.timerFired(Machine.electionTimer, 2_000))
      const master = net.states.get("s2")!
      expect(master.role).toBe("master")
      expect(master.leader?.phase).toBe("syncing")
      expect(master.leader?.replies.s3).toMatchObject({ amnesiac: true, lastSeq: 0 })
      expect(master.leader?.replies.s4).toMatchObject({ amnesiac: true, lastSeq: 0 })
      // Meanwhile it sends them what is already committed, so they apply it.
      net.step("s2", M.timerFired(Machine.detectTimer, 2_050))
      expect(net.states.get("s3")).toMatchObject({ amnesiac: true, replica: { state: 5 } })
      expect(net.states.get("s2")!.leader?.phase).toBe("syncing")
    })

    it("only a Replicate naming its incarnation, after a majority told it of no newer epoch, catches it up", () => {
      const follower = recv(boot("s4", 1_000).state, "s1", {
        _tag: "Declare",
        epoch: epoch(1, 1),
        index: 1,
      }).state
      const replicate: Message.Replicate<Req> = {
        _tag: "Replicate",
        epoch: epoch(1, 1),
        index: 1,
        prevSeq: 0,
        prevEpoch: 0,
        entries: [{ _tag: "Noop", seq: 1, epoch: epoch(1, 1) }],
        commitSeq: 1,
        catchUp: 1_000,
        safeSeq: 1,
      }
      // Nobody non-amnesiac answered its probes yet: it stays amnesiac and says so.
      const alone = recv(follower, "s1", replicate)
      expect(alone.state.amnesiac).toBe(true)
      expect(sent(alone)).toEqual([
        {
          _tag: "Ack",
          epoch: epoch(1, 1),
          index: 4,
          ok: true,
          lastSeq: 1,
          amnesiac: true,
          incarnation: 1_000,
        },
      ])
      const heard = { ...follower, heard: { s1: epoch(1, 1), s2: epoch(1, 1), s3: epoch(1, 1) } }
      // A message meant for an earlier incarnation (sent before the restart) does not count.
      expect(recv(heard, "s1", { ...replicate, catchUp: 0 }).state.amnesiac).toBe(true)
      // One of the majority knows a newer epoch: a mastership it may have promised.
      expect(
        recv({ ...heard, heard: { ...heard.heard, s3: epoch(2, 3) } }, "s1", replicate).state
          .amnesiac,
      ).toBe(true)
      const caught = recv(heard, "s1", replicate)
      expect(caught.state).toMatchObject({ amnesiac: false, heard: {}, replica: { commitSeq: 1 } })
      expect(sent(caught)[0]).toMatchObject({ _tag: "Ack", amnesiac: false })
    })

    it("a restarted backup counts towards a commit again once caught up", () => {
      const net = running()
      net.step("s1", submit(1, 5, 60))
      net.restart("s4", 1_000)
      expect(net.states.get("s4")).toMatchObject({ role: "backup", master: "s1", amnesiac: true })
      // Its fresh probe replies came from three non-amnesiacs; s1's next Replicate names it.
      tickAll(net, 1_050)
      expect(net.states.get("s4")).toMatchObject({ amnesiac: false, replica: { state: 5 } })
      expect(net.states.get("s1")!.leader?.amnesiacs.s4).toBe(false)
      // With s3 gone, s1 + s2 + s4 is the majority of four: s4 must count for this to commit.
      net.down.add("s3")
      net.step("s1", submit(2, 1, 1_100))
      // Once s3 is no longer live (no ack within the inquiry time-out), the majority decides.
      net.step("s1", M.timerFired(Machine.detectTimer, 1_400))
      expect(net.log).toContainEqual({
        node: "s1",
        event: { _tag: "Answered", clientId: "c", requestId: 2, result: 6 },
      })
    })

    it("once every peer reported no newer epoch, a Replicate naming its incarnation catches it up without a non-amnesiac majority", () => {
      const follower = recv(boot("s4", 1_000).state, "s1", {
        _tag: "Declare",
        epoch: epoch(1, 1),
        index: 1,
      }).state
      const replicate: Message.Replicate<Req> = {
        _tag: "Replicate",
        epoch: epoch(1, 1),
        index: 1,
        prevSeq: 0,
        prevEpoch: 0,
        entries: [{ _tag: "Noop", seq: 1, epoch: epoch(1, 1) }],
        commitSeq: 1,
        catchUp: 1_000,
        safeSeq: 1,
      }
      // Fresh probe replies: s1 and s2 non-amnesiac (not a majority of four), s3 amnesiac.
      const reply = (from: string, index: number, amnesiac: boolean, at = epoch(1, 1)) =>
        ({
          _tag: "ProbeReply",
          epoch: at,
          index,
          seq: 1,
          master: "s1",
          role: from === "s1" ? "master" : "backup",
          history: true,
          amnesiac,
          incarnation: 1_000,
        }) as const
      const two = recv(
        recv(follower, "s1", reply("s1", 1, false)).state,
        "s2",
        reply("s2", 2, false),
      ).state
      expect(two).toMatchObject({ heard: { s1: epoch(1, 1), s2: epoch(1, 1) } })
      // Two of three peers: a promise it forgot may be known to the silent one.
      expect(recv(two, "s1", replicate).state.amnesiac).toBe(true)
      // A reply to a probe of an earlier incarnation says nothing about this one.
      expect(recv(two, "s3", { ...reply("s3", 3, true), incarnation: 0 }).state.heardAll).toEqual(
        two.heardAll,
      )
      // The amnesiac peer knows of a newer epoch: it stays amnesiac.
      const newer = recv(two, "s3", reply("s3", 3, true, epoch(2, 3))).state
      expect(newer.heardAll).toMatchObject({ s3: epoch(2, 3) })
      expect(recv(newer, "s1", replicate).state.amnesiac).toBe(true)
      // Every peer answered at this epoch: nobody can remember a newer promise, it counts.
      const all = recv(two, "s3", reply("s3", 3, true)).state
      expect(all.heard).not.toHaveProperty("s3")
      const caught = recv(all, "s1", replicate)
      expect(caught.state).toMatchObject({ amnesiac: false, heard: {}, heardAll: {} })
      expect(sent(caught)[0]).toMatchObject({ _tag: "Ack", amnesiac: false })
    })

    it("FastSim seed 1966, compactly: with a majority restarted under a live master, the group commits again once every server is back", () => {
      const net = running()
      net.step("s1", submit(1, 5, 60))
      // s3 and s4 restart together: each hears of the group from s1 and s2 only among the
      // non-amnesiacs, never a majority of four.
      net.down.add("s4")
      net.restart("s3", 1_000)
      net.down.delete("s4")
      net.restart("s4", 1_000)
      expect(net.states.get("s3")).toMatchObject({ master: "s1", amnesiac: true })
      expect(net.states.get("s4")).toMatchObject({ master: "s1", amnesiac: true })
      // A probe round: every peer answers each of them at s1's epoch; s1's next Replicate
      // names their incarnations and catches them up.
      tickAll(net, 1_050)
      tickAll(net, 1_100)
      for (const id of ["s3", "s4"])
        expect(net.states.get(id)).toMatchObject({ amnesiac: false, replica: { state: 5 } })
      // s1 + s3 + s4 is a majority of four: s2 down, the new request still commits.
      net.down.add("s2")
      net.step("s1", submit(2, 1, 1_150))
      net.step("s1", M.timerFired(Machine.detectTimer, 1_500))
      expect(net.log).toContainEqual({
        node: "s1",
        event: { _tag: "Answered", clientId: "c", requestId: 2, result: 6 },
      })
      // The next Replicate carries the commit point: the backups apply it too.
      net.step("s1", M.timerFired(Machine.detectTimer, 1_600))
      for (const id of ["s1", "s3", "s4"]) expect(net.states.get(id)!.replica.state).toBe(6)
    })

    it("FastSim seed 335, compactly: a restarted server never lets an old master commit over a newer one's entries", () => {
      const five = [1, 2, 3, 4, 5].map((i) => ({
        id: `t${i}`,
        capacity: { cpu: 10 - i, bandwidthMbps: 1 },
      }))
      const members = five.map((server) => server.id)
      const m = Machine.make({ ...config, servers: five })
      const net = cluster(members, m)
      const tick = (nowMs: number) => {
        for (const id of members)
          if (!net.down.has(id)) net.step(id, M.timerFired(Machine.detectTimer, nowMs))
      }
      net.deliver(0)
      net.step("t1", M.timerFired(Machine.electionTimer, 50))
      tick(60)
      tick(70)
      for (const id of members) expect(net.states.get(id)!.amnesiac).toBe(false)
      // t1 (master, epoch e1) appends X, which reaches t2 only: not committed.
      for (const id of ["t3", "t4", "t5"]) net.down.add(id)
      net.step("t1", submit(1, 100, 70))
      expect(net.states.get("t2")!.replica.log).toHaveLength(2)
      // t1 and t2 are cut off; t3 declares (e2), syncs with t4 and t5 and commits its no-op at X's place.
      net.down.clear()
      net.down.add("t1")
      net.down.add("t2")
      const t3 = net.states.get("t3")!
      net.states.set(
        "t3",
        fire(fire(t3, Machine.detectTimer, 100).state, Machine.inquiryTimer, 400).state,
      )
      net.step("t3", M.timerFired(Machine.electionTimer, 900))
      tick(950)
      const e2 = net.states.get("t3")!.epoch
      expect(net.states.get("t3")).toMatchObject({ role: "master", replica: { commitSeq: 2 } })
      expect(net.states.get("t5")!.replica.log[1]).toEqual({ _tag: "Noop", seq: 2, epoch: e2 })
      // t4 crashes and comes back empty; t3 and t5 are cut off, t1 and t2 return.
      net.down.clear()
      net.down.add("t3")
      net.down.add("t5")
      net.restart("t4", 1_000)
      tick(1_050)
      tick(1_100)
      // t4 follows t1 (the only master it hears of) but stays amnesiac: it heard from two
      // non-amnesiacs only. So X has t1 and t2, never a majority: not committed, not applied.
      expect(net.states.get("t4")).toMatchObject({ master: "t1", amnesiac: true })
      expect(net.states.get("t1")!.replica.commitSeq).toBe(1)
      expect(net.log.some(({ event }) => event._tag === "Answered")).toBe(false)
      // Healed: t1 meets the newer epoch, wins the comparison, revokes, and syncs from the
      // non-amnesiacs: it adopts e2's log, so X is dropped and every server agrees.
      net.down.clear()
      tick(1_150)
      tick(1_200)
      const applied = members.map((id) => Machine.applied(net.states.get(id)!))
      const longest = applied.reduce((a, b) => (a.length >= b.length ? a : b))
      for (const sequence of applied) expect(longest.slice(0, sequence.length)).toEqual(sequence)
      expect(longest[1]).toEqual({ _tag: "Noop", seq: 2, epoch: e2 })
      expect(applied.every((sequence) => sequence.every((entry) => entry._tag === "Noop"))).toBe(
        true,
      )
    })
  })
})

describe("log compaction", () => {
  const compacting = Machine.make({
    ...config,
    snapshot: Replication.snapshotCodec(Schema.Number, Schema.Number),
    compactEvery: 8,
    snapshotChunkChars: 10,
    logEntriesMax: 20,
  })
  const write = (
    net: ReturnType<typeof running>,
    master: string,
    from: number,
    count: number,
    nowMs: number,
  ) => {
    for (let requestId = from; requestId < from + count; requestId++) {
      net.step(
        master,
        M.command({ _tag: "Submit", clientId: "c", requestId, request: { add: 1 } }, nowMs),
      )
    }
  }
  const answered = (net: ReturnType<typeof running>) =>
    net.log.filter(({ event }) => event._tag === "Answered").length

  it("no lifetime cap: 300 writes through a log of at most 20 entries are all answered, and the log stays bounded", () => {
    // Without compaction the 20th entry fills the log: every later write is `log-full`.
    const capped = running(Machine.make({ ...config, logEntriesMax: 20 }))
    write(capped, "s1", 1, 40, 60)
    expect(capped.log.some(({ event }) => event._tag === "Rejected")).toBe(true)

    const net = running(compacting)
    write(net, "s1", 1, 300, 60)
    net.step("s1", M.timerFired(Machine.detectTimer, 100))
    expect(net.log.some(({ event }) => event._tag === "Rejected")).toBe(false)
    expect(answered(net)).toBe(300)
    for (const id of ids) {
      const replica = net.states.get(id)!.replica
      expect(replica.state).toBe(300)
      expect(replica.log.length).toBeLessThanOrEqual(20)
      expect(replica.base.seq).toBeGreaterThan(250)
    }
  })

  it("a backup down while the master compacted gets the snapshot, in chunks, and applies on from it", () => {
    const net = running(compacting)
    net.down.add("s4")
    // Past the inquiry time-out since s4's last ack: it no longer counts as live.
    write(net, "s1", 1, 50, 400)
    net.down.delete("s4")
    const before = net.states.get("s4")!.replica
    expect(before.appliedSeq).toBeLessThan(net.states.get("s1")!.replica.base.seq)
    net.step("s1", M.timerFired(Machine.detectTimer, 500))
    const installed = net.log.filter(({ event }) => event._tag === "SnapshotInstalled")
    expect(installed.map(({ node }) => node)).toEqual(["s4"])
    write(net, "s1", 51, 5, 510)
    net.step("s1", M.timerFired(Machine.detectTimer, 600))
    const s4 = net.states.get("s4")!.replica
    expect(s4.state).toBe(55)
    expect(s4.appliedSeq).toBe(net.states.get("s1")!.replica.appliedSeq)
    expect(answered(net)).toBe(55)
  })

  it("a new master whose commit point is behind what the backups compacted gets a backup's snapshot, then serves", () => {
    const net = running(compacting)
    // s2 falls behind (cut off), and notices: its inquiry goes unanswered.
    net.down.add("s2")
    net.step("s2", M.timerFired(Machine.detectTimer, 100))
    net.step("s2", M.timerFired(Machine.inquiryTimer, 400))
    write(net, "s1", 1, 50, 410)
    expect(net.states.get("s2")!.role).toBe("waiting")
    // s1 dies, s2 is back and declares: s3 and s4 compacted past its commit point.
    net.down.delete("s2")
    net.down.add("s1")
    const behind = net.states.get("s2")!.replica.commitSeq
    expect(behind).toBeLessThan(net.states.get("s3")!.replica.base.seq)
    net.step("s2", M.timerFired(Machine.electionTimer, 500))
    net.step("s2", M.timerFired(Machine.detectTimer, 510))
    const s2 = net.states.get("s2")!
    expect(s2.role).toBe("master")
    expect(s2.leader?.phase).toBe("ready")
    expect(
      net.log.some(({ node, event }) => node === "s2" && event._tag === "SnapshotInstalled"),
    ).toBe(true)
    write(net, "s2", 51, 3, 520)
    net.step("s2", M.timerFired(Machine.detectTimer, 600))
    for (const id of ["s2", "s3", "s4"]) expect(net.states.get(id)!.replica.state).toBe(53)
  })
})
