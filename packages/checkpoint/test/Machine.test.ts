/**
 * The duplex session's server machine, rule by rule, with no I/O: its checkpoint writes are
 * outputs and their completion an input, so the write-ahead order is checked on the outputs
 * of each step. Then seeded interleavings (a write completing late, acknowledgements and the
 * client's bytes arriving meanwhile, a hand-off) checked after every step.
 *
 * Replay one seed: UNDERSTUDY_SEED=<n> npx vitest run test/Machine.test.ts
 */
import { Machine as M } from "@understudy/machine"
import { Prng, Seeds } from "@understudy/testkit"
import { describe, expect, it } from "vitest"
import * as Machine from "../src/Machine.ts"
import type * as Message from "../src/Message.ts"
import * as Proof from "../src/Proof.ts"
import * as App from "./support/duplexApp.ts"

const isn = 1_000
const clientIsn = 5_000
const windowBytesMax = 4_096
const segmentBytes = 512

const open: Machine.DuplexStart = {
  _tag: "Open",
  sessionId: "s",
  secret: new Uint8Array(16),
  initialSeq: isn,
  clientInitialSeq: clientIsn,
}

const make = (start: Machine.DuplexStart = open) =>
  Machine.duplexServer({ handler: App.handler, windowBytesMax, segmentBytes, start })

const data = (seq: number, bytes: Uint8Array, nowMs = 0) =>
  M.receive<Message.Message>(Machine.client, { _tag: "Data", seq, bytes }, nowMs)
const message = (m: Message.Message) => M.receive<Message.Message>(Machine.client, m, 0)
const command = (c: Machine.DuplexCommand) =>
  M.command<Machine.DuplexCommand>(c, 0) as M.Input<Message.Message, Machine.DuplexCommand>

const sent = (outputs: ReadonlyArray<M.Output<Message.Message, unknown>>) =>
  outputs.flatMap((o) => (o._tag === "Send" ? [o.message] : []))
const writes = (outputs: ReadonlyArray<Machine.DuplexOutput>) =>
  M.events(outputs).flatMap((e) => (e._tag === "WriteCheckpoint" ? [e.snapshot] : []))

/** A session opened and stepped with `inputs`; the state is the machine's own (in place). */
const run = (inputs: ReadonlyArray<M.Input<Message.Message, Machine.DuplexCommand>>) => {
  const machine = make()
  const first = machine.init({ self: "server", peers: [Machine.client], nowMs: 0 })
  return { machine, ...M.stepAll(machine, first.state, inputs) }
}

describe("Machine.duplexServer", () => {
  it("opens with Opened, and sends nothing of its own before the client writes", () => {
    const first = make().init({ self: "server", peers: [Machine.client], nowMs: 0 })
    expect(sent(first.outputs)).toEqual([
      {
        _tag: "Opened",
        sessionId: "s",
        secret: new Uint8Array(16),
        channels: [{ name: "data", initialSeq: isn }],
        window: windowBytesMax,
      },
    ])
  })

  it("write-ahead: the answer to the client's bytes leaves only once a checkpoint holding it is written", () => {
    const input = App.input(300, 1)
    const before = run([data(clientIsn, input)])
    // The application read the bytes and wrote its answer: a checkpoint, and nothing sent.
    expect(writes(before.outputs)).toHaveLength(1)
    expect(sent(before.outputs)).toEqual([])
    const held = writes(before.outputs)[0]!
    expect(held.currentSeqSource).toBe(isn + 300)
    expect(held.currentSeqDestination).toBe(clientIsn + 300)
    const after = before.machine.step(before.state, command({ _tag: "Checkpointed" }))
    const answer = sent(after.outputs).filter((m) => m._tag === "Data")
    expect(answer).toEqual([
      { _tag: "Data", seq: isn, bytes: App.expected(input).subarray(0, 300) },
    ])
  })

  it("acknowledges the client's bytes only once a checkpoint holds their effect", () => {
    const before = run([data(clientIsn, App.input(100, 2))])
    expect(sent(before.outputs).filter((m) => m._tag === "Ack")).toEqual([])
    const after = before.machine.step(before.state, command({ _tag: "Checkpointed" }))
    expect(sent(after.outputs)[0]).toEqual({ _tag: "Ack", ack: clientIsn + 100 })
    // Bytes that arrive while a write is out are not read, nor acknowledged, until the next one.
    const more = before.machine.step(after.state, data(clientIsn + 100, App.input(50, 3)))
    expect(sent(more.outputs).filter((m) => m._tag === "Ack")).toEqual([])
    expect(writes(more.outputs)[0]!.currentSeqDestination).toBe(clientIsn + 150)
  })

  it("a write still out holds back what arrives: nothing read, nothing sent", () => {
    const first = run([data(clientIsn, App.input(100, 4))])
    const meanwhile = M.stepAll(first.machine, first.state, [
      data(clientIsn + 100, App.input(100, 5)),
    ])
    expect(meanwhile.outputs).toEqual([])
    expect(meanwhile.state.receiver.next).toBe(clientIsn + 100)
  })

  it("resumes at the exact byte: Resumed names what the checkpoint read, and resends from the client's acknowledgement", () => {
    const window = App.expected(App.input(1_000, 6)).subarray(0, 1_000)
    const start: Machine.DuplexStart = {
      _tag: "Resume",
      checkpoint: {
        initialSeqSource: isn,
        ackedSeqSource: isn,
        currentSeqSource: isn + 1_000,
        window,
        initialSeqDestination: clientIsn,
        currentSeqDestination: clientIsn + 1_000,
        app: { count: 1_000, sum: 0 },
        inputEnded: false,
      },
      sendHorizonSeq: isn + 1_000,
      resumeSeq: isn + 700,
    }
    const first = make(start).init({ self: "server", peers: [Machine.client], nowMs: 0 })
    expect(sent(first.outputs)).toEqual([
      { _tag: "Resumed", receiveNext: { data: clientIsn + 1_000 }, window: windowBytesMax },
    ])
    // The client's acknowledgement comes with its next bytes; the server sends again from 700.
    const resent = make(start).step(first.state, message({ _tag: "Ack", ack: isn + 700 }))
    const bytes = sent(resent.outputs).filter((m) => m._tag === "Data")
    expect(bytes[0]).toEqual({ _tag: "Data", seq: isn + 700, bytes: window.subarray(700, 1_000) })
  })

  it("a gap, an overrun and an acknowledgement beyond what was sent break the session", () => {
    // Broken once what was read is durable (the client's bytes before an overrun were read).
    const reason = (input: M.Input<Message.Message, Machine.DuplexCommand>) => {
      const stepped = run([input])
      const after = stepped.state.writing
        ? stepped.machine.step(stepped.state, command({ _tag: "Checkpointed" })).outputs
        : []
      return M.events([...stepped.outputs, ...after]).find((e) => e._tag === "Broken")
    }
    expect(reason(data(clientIsn + 1, App.input(10, 7)))).toEqual({
      _tag: "Broken",
      reason: "a gap in the client's bytes",
    })
    expect(reason(data(clientIsn, App.input(windowBytesMax + 1, 8)))).toEqual({
      _tag: "Broken",
      reason: "the client overran its window",
    })
    expect(reason(message({ _tag: "Ack", ack: isn + 1 }))).toEqual({
      _tag: "Broken",
      reason: "an acknowledgement beyond sent",
    })
  })

  it("a hand-off makes what was read durable first, then tells the client to go", () => {
    const read = run([data(clientIsn, App.input(100, 9))])
    const written = read.machine.step(read.state, command({ _tag: "Checkpointed" }))
    // More bytes read, their checkpoint still out when the hand-off comes: it waits for it.
    const more = read.machine.step(written.state, data(clientIsn + 100, App.input(50, 10)))
    const asked = read.machine.step(more.state, command({ _tag: "Handoff", to: "tcp://b:1" }))
    expect(asked.outputs).toEqual([])
    const done = read.machine.step(asked.state, command({ _tag: "Checkpointed" }))
    expect(sent(done.outputs).map((m) => m._tag)).toEqual(["Ack", "Data", "Handoff"])
    expect(sent(done.outputs)[0]).toEqual({ _tag: "Ack", ack: clientIsn + 150 })
    expect(sent(done.outputs)[2]).toEqual({ _tag: "Handoff", to: "tcp://b:1" })
    expect(M.events(done.outputs)).toEqual([{ _tag: "HandedOff", to: "tcp://b:1" }])
  })

  it("a hand-off with everything durable goes at once", () => {
    const read = run([data(clientIsn, App.input(100, 11))])
    const written = read.machine.step(read.state, command({ _tag: "Checkpointed" }))
    const asked = read.machine.step(written.state, command({ _tag: "Handoff", to: undefined }))
    expect(sent(asked.outputs)).toEqual([{ _tag: "Handoff" }])
    expect(writes(asked.outputs)).toEqual([])
  })

  it("ends with Finish once everything is durable, and Finished once the client acknowledged it all", () => {
    const input = App.input(200, 10)
    const answer = App.expected(input)
    const read = run([data(clientIsn, input), message({ _tag: "Finish" })])
    // The answer to the bytes is written, then (the client's end seen) the trailer.
    const first = read.machine.step(read.state, command({ _tag: "Checkpointed" }))
    expect(writes(first.outputs)[0]!.inputEnded).toBe(true)
    const written = read.machine.step(first.state, command({ _tag: "Checkpointed" }))
    const out = [...sent(first.outputs), ...sent(written.outputs)]
    expect(out.at(-1)).toEqual({ _tag: "Finish" })
    expect(out.filter((m) => m._tag === "Data").reduce((n, m) => n + m.bytes.length, 0)).toBe(
      answer.length,
    )
    const done = read.machine.step(
      written.state,
      message({ _tag: "Ack", ack: isn + answer.length }),
    )
    expect(M.events(done.outputs)).toEqual([{ _tag: "Finished", bytes: answer.length }])
  })
})

/**
 * Seeded interleavings: the client writes uneven chunks and acknowledges late, writes
 * complete after a random number of other inputs, and a hand-off may come. After every step:
 * no byte sent at or beyond what the latest written checkpoint holds, no acknowledgement
 * beyond what it has read, and the answer sent is, in order, exactly the answer to what the
 * client wrote.
 */
const interleave = (seed: number): number => {
  const random = Prng.make(seed)
  const input = App.input(random.int(1, 40_000), seed)
  const answer = App.expected(input)
  const machine = make()
  let { state } = machine.init({ self: "server", peers: [Machine.client], nowMs: 0 })
  let written: Machine.Snapshot | undefined
  let pending: Machine.Snapshot | undefined
  let clientSent = 0
  let ended = false
  let handoff = false
  let received = 0
  const answered: Array<number> = []
  for (let steps = 0; steps < 100_000; steps++) {
    let next: M.Input<Message.Message, Machine.DuplexCommand>
    const choice = random.next()
    if (pending !== undefined && choice < 0.3) {
      written = pending
      pending = undefined
      next = command({ _tag: "Checkpointed" })
    } else if (choice < 0.6 && clientSent < input.length) {
      // The client sends within the window the server acknowledged.
      const room = clientInitialRoom(state, clientSent)
      const n = Math.min(room, random.int(1, 3_000), input.length - clientSent)
      if (n <= 0) continue
      next = data(clientIsn + clientSent, input.subarray(clientSent, clientSent + n))
      clientSent += n
    } else if (choice < 0.85 && received > state.sender.acked - isn) {
      next = message({ _tag: "Ack", ack: isn + random.int(state.sender.acked - isn, received) })
    } else if (clientSent === input.length && !ended) {
      ended = true
      next = message({ _tag: "Finish" })
    } else if (!handoff && random.next() < 0.001) {
      handoff = true
      next = command({ _tag: "Handoff", to: undefined })
    } else continue
    const result = machine.step(state, next)
    state = result.state
    for (const output of result.outputs) {
      if (output._tag === "Emit" && output.event._tag === "WriteCheckpoint") {
        if (pending !== undefined) return fail(seed, "a second write while one is out")
        pending = output.event.snapshot
      }
      if (output._tag === "Emit" && output.event._tag === "Broken")
        return fail(seed, output.event.reason)
      if (output._tag !== "Send") continue
      const m = output.message
      if (m._tag === "Data") {
        const end = m.seq + m.bytes.length
        if (written === undefined || end > written.currentSeqSource)
          return fail(
            seed,
            `sent up to ${end} beyond the checkpoint's ${written?.currentSeqSource}`,
          )
        // Sent in order, each byte the answer's own (resends only after a takeover).
        if (m.seq - isn !== received) return fail(seed, `sent ${m.seq - isn}, expected ${received}`)
        for (let i = 0; i < m.bytes.length; i++) answered.push(m.bytes[i]!)
        received = end - isn
      } else if (m._tag === "Ack") {
        if (written === undefined || m.ack > written.currentSeqDestination)
          return fail(seed, `acknowledged ${m.ack} beyond the checkpoint's read`)
      }
    }
    if (state.over) break
  }
  if (handoff) {
    // Handed off: whatever was sent is a prefix of the answer.
    expect(Uint8Array.from(answered), `SEED=${seed}`).toEqual(answer.subarray(0, answered.length))
    return answered.length
  }
  expect(state.over, `SEED=${seed}: the session did not finish`).toBe(true)
  expect(Uint8Array.from(answered), `SEED=${seed}`).toEqual(answer)
  return answered.length
}

/** What the client may still send: its window is the server's, from the server's acknowledgement. */
const clientInitialRoom = (state: Machine.DuplexState, clientSent: number) =>
  state.durableReceived - clientIsn + windowBytesMax - clientSent

const fail = (seed: number, why: string): never => {
  throw new Error(`SEED=${seed}: ${why}`)
}

describe("Machine.duplexServer, seeded interleavings", () => {
  it("100 schedules: write-ahead, acknowledgement after the checkpoint, the answer exactly once", () => {
    let bytes = 0
    for (const seed of Seeds.seeds(100)) bytes += interleave(seed)
    expect(bytes).toBeGreaterThan(0)
  })
})

describe("Machine.duplexClient", () => {
  const secret = Uint8Array.from({ length: 32 }, (_, i) => i)
  const serverData = (seq: number, bytes: Uint8Array) =>
    M.receive<Message.Message>(Machine.server, { _tag: "Data", seq, bytes }, 0)
  const fromServer = (m: Message.Message) => M.receive<Message.Message>(Machine.server, m, 0)
  const clientCommand = (c: Machine.DuplexClientCommand) =>
    M.command<Machine.DuplexClientCommand>(c, 0) as M.Input<
      Message.Message,
      Machine.DuplexClientCommand
    >
  const opened = fromServer({
    _tag: "Opened",
    sessionId: "s",
    secret,
    channels: [{ name: "data", initialSeq: isn }],
    window: windowBytesMax,
  })
  /** A client that opened its session and wrote `written` bytes, `acked` of them acknowledged. */
  const client = (written: number, acked: number) => {
    const machine = Machine.duplexClient({ initialSeq: clientIsn, ackEveryBytes: 1_024 })
    const start = machine.init({ self: "client", peers: [Machine.server], nowMs: 0 })
    const inputs = [
      clientCommand({ _tag: "Connected" }),
      opened,
      clientCommand({ _tag: "Write", bytes: App.input(written, 12) }),
      ...(acked > 0 ? [fromServer({ _tag: "Ack", ack: clientIsn + acked })] : []),
    ]
    return { machine, ...M.stepAll(machine, start.state, inputs) }
  }
  const resumeOn = (c: ReturnType<typeof client>) => {
    const lost = c.machine.step(c.state, clientCommand({ _tag: "Lost" }))
    return c.machine.step(lost.state, clientCommand({ _tag: "Connected" }))
  }

  it("resumes with what it read and a proof bound to the session, its counter and that position", () => {
    const c = client(100, 0)
    const read = M.stepAll(c.machine, c.state, [
      serverData(isn, App.input(300, 13)),
      clientCommand({ _tag: "Delivered" }),
    ])
    const resumed = resumeOn({ ...c, state: read.state })
    const resume = sent(resumed.outputs)[0]!
    expect(resume).toMatchObject({
      _tag: "Resume",
      sessionId: "s",
      counter: 1,
      acks: { data: isn + 300 },
    })
    if (resume._tag !== "Resume") throw new Error("expected Resume")
    expect(Proof.verify(secret, "s", 1, resume.acks, resume.proof)).toBe(true)
  })

  it("counts the server's bytes as read only once the application took them", () => {
    const c = client(0, 0)
    const arrived = c.machine.step(c.state, serverData(isn, App.input(2_000, 14)))
    expect(M.events(arrived.outputs)).toEqual([{ _tag: "Deliver", bytes: App.input(2_000, 14) }])
    expect(sent(arrived.outputs)).toEqual([])
    // Lost before the application took them: the takeover server sends them again.
    const resumed = resumeOn({ ...c, state: arrived.state })
    expect(sent(resumed.outputs)[0]).toMatchObject({ acks: { data: isn } })
  })

  it("refuses a takeover server that resumes reading before what it acknowledged, or beyond what was sent", () => {
    for (const [at, reason] of [
      [clientIsn + 50, "TooOld"],
      [clientIsn + 301, "BeyondSent"],
    ] as const) {
      const c = client(300, 100)
      const resumed = resumeOn(c)
      const answer = c.machine.step(
        resumed.state,
        fromServer({ _tag: "Resumed", receiveNext: { data: at }, window: windowBytesMax }),
      )
      expect(M.events(answer.outputs)).toMatchObject([{ _tag: "ResumeRefused", reason }])
      expect(sent(answer.outputs)).toEqual([])
    }
  })

  it("sends again from exactly where the takeover server's checkpoint read", () => {
    const c = client(300, 100)
    const resumed = resumeOn(c)
    const answer = c.machine.step(
      resumed.state,
      fromServer({
        _tag: "Resumed",
        receiveNext: { data: clientIsn + 200 },
        window: windowBytesMax,
      }),
    )
    expect(sent(answer.outputs)).toEqual([
      { _tag: "Data", seq: clientIsn + 200, bytes: App.input(300, 12).subarray(200) },
    ])
  })

  it("sends Finish once ended and every byte it wrote is acknowledged", () => {
    const c = client(300, 100)
    const ended = c.machine.step(c.state, clientCommand({ _tag: "End" }))
    expect(sent(ended.outputs)).toEqual([])
    const acked = c.machine.step(ended.state, fromServer({ _tag: "Ack", ack: clientIsn + 300 }))
    expect(sent(acked.outputs)).toEqual([{ _tag: "Finish" }])
  })
})
