/**
 * What a request costs the leader when the license is full: `Reserve` from a follower, refused
 * for capacity, with `n` clients holding every seat at the leader. Before, the leader counted
 * every unexpired allocation one by one for such a request (`poolSeatsInUse`, O(n)); now it
 * takes its tally less what stopped counting since the last tick among the allocations that
 * tick found ending soon (`seatsCounted`, O(k · servers · log n) for k of them). Both are timed
 * in the same run, on the same state, and so is the whole step, for k = 0 (every client
 * heartbeating: none ends soon) and k = n (every lease ends by the next tick: the worst case).
 * A table, then one JSON line. Run: `node bench/reserveAtCapacity.ts` (a quiet machine for
 * figures; the load average is printed).
 */
import { loadavg } from "node:os"
import { Machine as M } from "@understudy/machine"
import * as Machine from "../src/Machine.ts"
import type * as Message from "../src/Message.ts"
import { ack, electedLeader, fakeCrypto, license, timing } from "../test/support/sim.ts"

const sizes = (process.env.BENCH_SIZES ?? "1000,10000,50000").split(",").map(Number)
/** Each figure is the best of this many rounds of at least `roundMs` each. */
const rounds = 5
const roundMs = 200

/** Microseconds per call of `run`, the best of `rounds`. */
const time = (run: () => unknown): number => {
  let best = Number.POSITIVE_INFINITY
  for (let round = 0; round < rounds; round++) {
    let calls = 0
    const startedAt = performance.now()
    let elapsed = 0
    while (elapsed < roundMs) {
      for (let index = 0; index < 16; index++) run()
      calls += 16
      elapsed = performance.now() - startedAt
    }
    best = Math.min(best, (elapsed * 1_000) / calls)
  }
  return best
}

/** s1 leads with `n` clients holding all `n` seats; a tick at `tickMs` found what ends soon. */
const fullLeader = (n: number, tickMs: number) => {
  const machine = Machine.make({
    servers: ["s1", "s2", "s3"],
    ...timing,
    crypto: fakeCrypto,
    initialLicense: license(n),
    clientsPerServerMax: n,
    shareSeatsMax: 0,
  })
  let state = electedLeader(machine, 3_000)
  for (let index = 0; index < n; index++) {
    const client = `c${index}`
    const request: Message.ClientRequest = {
      _tag: "Request",
      client,
      seq: 1,
      product: "cad",
      seats: 1,
    }
    state = machine.step(
      state,
      M.command<Machine.Command>({ _tag: "FromClient", from: client, message: request }, 3_001),
    ).state
  }
  // Keep the leader's authority through `tickMs`: both followers acknowledge each heartbeat.
  for (let atMs = 3_100; atMs <= tickMs; atMs += 100) {
    state = machine.step(state, M.timerFired(Machine.tickTimer, atMs)).state
    const seq = state.leaderState!.seq
    for (const follower of ["s2", "s3"])
      state = machine.step(state, M.receive(follower, ack(seq), atMs + 1)).state
  }
  return { machine, state }
}

const reserve: Message.Peer = {
  _tag: "Reserve",
  term: 1,
  client: "newcomer",
  seats: 1,
  reattach: false,
  heldAt: null,
}

const rows: Array<Record<string, number>> = []
for (const n of sizes) {
  // k = 0 at 3,100 ms (leases end at 5,001); k = n at 4,900 ms (all end by the tick after next).
  for (const tickMs of [3_100, 4_900]) {
    const { machine, state } = fullLeader(n, tickMs)
    const atMs = tickMs + 50
    const refused = machine.step(state, M.receive("s2", reserve, atMs)).outputs
    const answer = refused.find((output) => output._tag === "Send")
    if (
      answer?._tag !== "Send" ||
      answer.message._tag !== "Reserved" ||
      answer.message.refused !== "capacity"
    )
      throw new Error(`the full leader did not refuse for capacity: ${JSON.stringify(answer)}`)
    const exact = Machine.poolSeatsInUse(state, atMs, timing.leaseMs, "newcomer")
    const counted = Machine.seatsCounted(state, atMs, timing.leaseMs, "newcomer")
    if (counted !== exact) throw new Error(`counted ${counted} seats, ${exact} in use`)
    rows.push({
      clients: n,
      endingSoon: state.leaderState!.endingSoon.length,
      countAllUs: time(() => Machine.poolSeatsInUse(state, atMs, timing.leaseMs, "newcomer")),
      countedUs: time(() => Machine.seatsCounted(state, atMs, timing.leaseMs, "newcomer")),
      refusedStepUs: time(() => machine.step(state, M.receive("s2", reserve, atMs))),
    })
  }
}

const fixed = (value: number) => value.toFixed(value < 10 ? 2 : 0)
console.log(
  "clients  ending soon  count all (before) µs  tally less ending (now) µs  refused Reserve step µs",
)
for (const row of rows)
  console.log(
    `${String(row.clients).padStart(7)}  ${String(row.endingSoon).padStart(11)}  ${fixed(row.countAllUs!).padStart(22)}  ${fixed(row.countedUs!).padStart(26)}  ${fixed(row.refusedStepUs!).padStart(24)}`,
  )
console.log(JSON.stringify({ bench: "reserve-at-capacity", loadavg1: loadavg()[0], rows }))
