/**
 * Duplex sessions on FastSim, with the server machine itself on three servers and the client
 * machine on a client (`support/duplexWorld.ts`): each seed draws the client's stream, the link delays, and one
 * to three crashes of servers (the process or the whole host, restarted a while later) and
 * cuts between the client and a server, so the serving server dies or is cut off mid-stream
 * and another takes the session over from the store's latest checkpoint; a cut-off server
 * that lives on is fenced at its next write. A session connection is a stream: FIFO, and
 * what it loses it loses by dying (a crash, a cut), after which the client resumes on the
 * next server.
 *
 * Checked after every step: the client has read, in order and once, a prefix of the answer
 * to what it wrote; every checkpoint in the store holds the application's state after
 * reading exactly the client's bytes up to its position (once each, in order); the client
 * never holds a byte of the server's stream beyond what a checkpoint holds (write-ahead), nor
 * an acknowledgement of its own bytes beyond what a checkpoint has read. At the end: the
 * session completed, with the whole answer.
 *
 * Replay one seed: UNDERSTUDY_SEED=<n> npx vitest run test/Machine.fastsim.test.ts
 */
import { FastSim, type FaultSchedule, Prng, Seeds } from "@understudy/testkit"
import type { SimNet } from "@understudy/transport"
import { describe, expect, it } from "vitest"
import * as App from "./support/duplexApp.ts"
import * as World from "./support/duplexWorld.ts"

/** The application's state after reading each prefix of `input`: `sums[n]` after n bytes. */
const prefixSums = (input: Uint8Array): Uint32Array => {
  const sums = new Uint32Array(input.length + 1)
  for (let i = 0; i < input.length; i++) sums[i + 1] = (Math.imul(sums[i]!, 31) + input[i]!) >>> 0
  return sums
}

const schedule = (random: Prng.Prng): Array<FaultSchedule.Scheduled> => {
  // A checkpoint write takes its time (the store's disk, its consensus): up to several
  // client round trips, so bytes sent before their checkpoint holds them would show.
  const store: SimNet.LinkConfig = {
    latency: { _tag: "Fixed", ms: random.int(1, 20) },
    loss: 0,
    duplicate: 0,
    reorder: 0,
  }
  const faults: Array<FaultSchedule.Scheduled> = World.servers.flatMap((server) => [
    { atMs: 0, fault: { _tag: "SetLink", from: server, to: "store", link: store } },
    { atMs: 0, fault: { _tag: "SetLink", from: "store", to: server, link: store } },
  ])
  const crashes = random.int(1, 3)
  for (let i = 0; i < crashes; i++) {
    const atMs = random.int(2, 250)
    // The first server serves first: it is the likeliest to die mid-stream.
    const node = random.chance(0.5) ? "s1" : random.pick(World.servers)
    faults.push({
      atMs,
      fault: { _tag: "Crash", node, mode: random.chance(0.5) ? "process" : "host" },
    })
    faults.push({ atMs: atMs + random.int(20, 600), fault: { _tag: "Restart", node } })
  }
  if (random.chance(0.5)) {
    const atMs = random.int(2, 250)
    faults.push({
      atMs,
      fault: {
        _tag: "Partition",
        side: ["client"],
        other: [random.pick(World.servers)],
        oneWay: random.chance(0.3),
      },
    })
    faults.push({ atMs: atMs + random.int(20, 600), fault: { _tag: "Heal" } })
  }
  return faults.sort((a, b) => a.atMs - b.atMs)
}

const simulate = (seed: number) => {
  const random = Prng.make(seed)
  const input = App.input(random.int(1, 64_000), seed)
  const answer = App.expected(input)
  const sums = prefixSums(input)
  let checked = 0
  const store = (view: FastSim.View<World.NodeState>) =>
    view.states.get("store") as World.StoreState | undefined
  const client = (view: FastSim.View<World.NodeState>) =>
    view.states.get("client") as World.ClientState | undefined
  const report = FastSim.run<World.NodeState, World.Msg, never, World.NodeEvent>({
    machine: World.world(input),
    nodes: World.nodes,
    seed,
    durationMs: 30_000,
    schedule: schedule(random),
    link: {
      latency: { _tag: "Fixed", ms: random.int(1, 5) },
      loss: 0,
      duplicate: 0,
      reorder: 0,
    },
    invariants: [
      {
        name: "server to client: each byte once, in order",
        check: (view) => {
          const c = client(view)
          if (c === undefined) return undefined
          for (; checked < c.delivered.length; checked++)
            if (checked >= answer.length || c.delivered[checked] !== answer[checked])
              return `byte ${checked} of the answer is wrong`
          return undefined
        },
      },
      {
        name: "client to server: every checkpoint read each byte once, in order",
        check: (view) => {
          for (const [id, { held }] of store(view)?.sessions ?? []) {
            const read = held.snapshot.currentSeqDestination - World.clientIsn
            const app = held.snapshot.app as App.State
            if (app.count !== read || app.sum !== sums[read])
              return `session ${id}: the checkpoint's state read ${app.count} bytes (sum ${app.sum}), its position says ${read} (sum ${sums[read]})`
          }
          return undefined
        },
      },
      {
        name: "write-ahead and acknowledgement after the checkpoint",
        check: (view) => {
          const c = client(view)?.state
          if (c?.session === undefined) return undefined
          const found = store(view)?.sessions.get(c.session.id)
          if (found === undefined) return `no checkpoint of ${c.session.id}`
          const held = found.held.snapshot
          if (c.receiver!.next > held.currentSeqSource)
            return `the client read up to ${c.receiver!.next}, the checkpoint holds ${held.currentSeqSource}`
          if (c.sender.acked > held.currentSeqDestination)
            return `the client was acknowledged ${c.sender.acked}, the checkpoint read ${held.currentSeqDestination}`
          return undefined
        },
      },
    ],
  })
  const done = report.events.find((e) => e.node === "client" && e.event._tag === "Completed")
  if (done === undefined)
    throw new Error(`SEED=${seed}: the session did not complete\n${report.formatTrace()}`)
  expect(done.event, `SEED=${seed}`).toEqual({ _tag: "Completed", bytes: answer.length })
  return report.events.filter((e) => e.event._tag === "Resumed").length
}

describe("The duplex machines on FastSim: servers killed and cut off mid-stream", () => {
  it("200 seeded schedules: every byte once, in order, both ways", () => {
    const seeds = Seeds.seeds(200)
    let resumed = 0
    for (const seed of seeds) resumed += simulate(seed)
    // The schedules take sessions over, not only run them.
    expect(resumed).toBeGreaterThan(seeds.length / 4)
  })
})
