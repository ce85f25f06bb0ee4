/**
 * Group commit in the machine (`SubmitMany`, what the driver sends for the requests that
 * arrived while a step was made durable): the same log and answers as that many `Submit`s,
 * but one replication message per backup; a retry inside the batch is appended once; at a
 * backup every request is refused as not-master. Reads batched (`ReadMany`) share one round.
 */
import { describe, expect, it } from "@effect/vitest"
import { Machine as M } from "@understudy/machine"
import { FastSim } from "@understudy/testkit"
import * as Machine from "../src/Machine.ts"
import type * as Message from "../src/Message.ts"

type Req = { readonly add: number }
type St = Machine.State<number, Req, number>
type Msg = Message.Message<Req>

const machine = Machine.make<number, Req, number>({
  servers: [
    { id: "a", capacity: { cpu: 4, bandwidthMbps: 100 } },
    { id: "b", capacity: { cpu: 2, bandwidthMbps: 100 } },
    { id: "c", capacity: { cpu: 8, bandwidthMbps: 100 } },
  ],
  detectionPeriodMs: 50,
  inquiryTimeoutMs: 150,
  baseDelayMs: 40,
  initial: 0,
  apply: (state, request) => [state + request.add, state + request.add] as const,
})

/** A settled group of three (c master): its final states. */
const settled = (() => {
  let final: ReadonlyMap<string, St> = new Map()
  FastSim.run<St, Msg, Machine.Command<Req>, Machine.Event<number>>({
    machine,
    nodes: ["a", "b", "c"],
    seed: 3,
    durationMs: 800,
    link: { latency: { _tag: "Fixed", ms: 2 }, loss: 0, duplicate: 0, reorder: 0 },
    invariants: [
      {
        name: "capture",
        check: (view) => {
          if (view.final) final = new Map(view.states)
          return undefined
        },
      },
    ],
  })
  return final
})()

const submit = (requestId: number, add: number): Machine.Submit<Req> => ({
  _tag: "Submit",
  clientId: "client",
  requestId,
  request: { add },
})

const replicates = (outputs: ReadonlyArray<M.Output<Msg, Machine.Event<number>>>) =>
  outputs.filter((o) => o._tag === "Send" && o.message._tag === "Replicate")

describe("SubmitMany", () => {
  it("appends like that many Submits, with one replication message per backup; a retry in the batch is appended once", () => {
    const master = settled.get("c")!
    expect(master.role).toBe("master")
    expect(master.leader?.phase).toBe("ready")
    const nowMs = 900
    const batch = [submit(1, 1), submit(2, 2), submit(2, 2), submit(3, 3)]
    const many = machine.step(master, M.command({ _tag: "SubmitMany", submits: batch }, nowMs))
    let one = master
    const oneByOne: Array<M.Output<Msg, Machine.Event<number>>> = []
    for (const s of batch) {
      const result = machine.step(one, M.command(s, nowMs))
      one = result.state
      oneByOne.push(...result.outputs)
    }
    expect(many.state.replica.log).toEqual(one.replica.log)
    expect(many.state.replica.log.length - master.replica.log.length).toBe(3)
    // One Replicate to each backup, carrying the three entries.
    const sent = replicates(many.outputs)
    expect(sent.map((o) => o._tag === "Send" && o.to).sort()).toEqual(["a", "b"])
    for (const o of sent) {
      if (o._tag === "Send" && o.message._tag === "Replicate") {
        expect(o.message.entries.map((e) => e.seq)).toEqual(
          one.replica.log.slice(-3).map((e) => e.seq),
        )
      }
    }
    expect(replicates(oneByOne).length).toBe(2 * 3)
  })

  it("at a backup, every request of the batch is refused as not-master", () => {
    const backup = settled.get("a")!
    expect(backup.role).toBe("backup")
    const result = machine.step(
      backup,
      M.command({ _tag: "SubmitMany", submits: [submit(1, 1), submit(2, 1)] }, 900),
    )
    const rejected = result.outputs.flatMap((o) =>
      o._tag === "Emit" && o.event._tag === "Rejected" ? [o.event] : [],
    )
    expect(rejected.map((e) => [e.requestId, e.reason])).toEqual([
      [1, "not-master"],
      [2, "not-master"],
    ])
    expect(result.state.replica.log).toBe(backup.replica.log)
  })

  it("ReadMany: the reads share one round, begun by one message per backup; at a backup each is refused", () => {
    const master = settled.get("c")!
    const result = machine.step(master, M.command({ _tag: "ReadMany", readIds: [7, 8, 9] }, 900))
    const leader = result.state.leader!
    expect(leader.readRound).toBe(master.leader!.readRound + 1)
    expect(leader.reads.slice(-3)).toEqual([
      { readId: 7, round: leader.readRound },
      { readId: 8, round: leader.readRound },
      { readId: 9, round: leader.readRound },
    ])
    expect(
      replicates(result.outputs)
        .map((o) => o._tag === "Send" && o.to)
        .sort(),
    ).toEqual(["a", "b"])
    const backup = settled.get("a")!
    const refused = machine.step(backup, M.command({ _tag: "ReadMany", readIds: [1, 2] }, 900))
    expect(
      refused.outputs.flatMap((o) =>
        o._tag === "Emit" && o.event._tag === "ReadRejected" ? [o.event.readId] : [],
      ),
    ).toEqual([1, 2])
  })
})
