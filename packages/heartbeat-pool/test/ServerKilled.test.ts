/**
 * A client whose server process is SIGKILLed, over real UDP on loopback: three servers as OS
 * processes (the bench's `serverProcess.ts`), one client (`Client.run`) in this process. Once
 * the client holds its seat, the process holding it is killed: the kernel answers the
 * client's next heartbeat with an ICMP port unreachable, the kernel's report reaches the client
 * machine as an `Unreachable` command, and the client re-attaches. Asserted on the client's
 * steps, never on durations; waits are for events, bounded generously (a loaded machine).
 *
 * What is checked here is the real path of the report (kernel, connected socket, endpoint,
 * `Client`'s command), with the client's default timings: every heartbeat after the kill
 * goes to the dead port, so a report must come, whoever wins the race. Whether the walk is
 * made on it or on the timed detection is timing: a process starved at load ~30 may read its
 * timers first. That the report, when it comes first, walks at once is the machine's
 * behaviour, checked without a race on simulated time (`ClientDetection.sim.test.ts`,
 * `ClientMachine.test.ts`). Without `reportUnreachable` no report is stepped and the test
 * fails.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { JsonLinesProcess as Jl } from "@understudy/testkit"
import { NodeDatagram } from "@understudy/transport"
import { Effect, Redacted, Stream } from "effect"
import { afterAll } from "vitest"
import * as Client from "../src/Client.ts"
import type * as ClientMachine from "../src/ClientMachine.ts"
import { loopbackMembers, signedPool } from "./support/pool.ts"

const dir = mkdtempSync(join(tmpdir(), "heartbeat-pool-killed-"))
afterAll(() => {
  Jl.killAll()
  rmSync(dir, { recursive: true, force: true })
})

const heartbeatIntervalMs = 100
// Margins for a loaded machine: a lease of 20 heartbeats (a new leader settles for a lease).
const timing = {
  heartbeatIntervalMs,
  followerTimeoutMs: 1_000,
  checkTimeoutMs: 300,
  leaderLeaseMs: 700,
  downAfterMs: 800,
  electionStaggerMs: 200,
  leaseMs: 2_000,
}

/** Polls `check` every 20 ms, at most `timeoutMs`. */
const until = (what: string, check: () => boolean, timeoutMs: number) =>
  Effect.gen(function* () {
    for (let waited = 0; !check(); waited += 20) {
      if (waited > timeoutMs)
        return yield* Effect.die(new Error(`not within ${timeoutMs} ms: ${what}`))
      yield* Effect.sleep(20)
    }
  })

describe("a server process SIGKILLed", () => {
  it.live(
    "its client hears of the closed port (the kernel's report reaches the machine) and re-attaches",
    () =>
      Effect.gen(function* () {
        const { secret, vendor, license } = signedPool(2)
        const members = yield* loopbackMembers
        const servers = new Map(
          members.map((member) => [
            member.id,
            new Jl.JsonLinesProcess(
              join(import.meta.dirname, "../bench/serverProcess.ts"),
              [
                JSON.stringify({
                  self: member.id,
                  members,
                  vendorPublicKey: vendor.publicPem,
                  stateDir: join(dir, member.id),
                  license,
                  timing,
                }),
              ],
              { env: { POOL_SECRET_HEX: Buffer.from(Redacted.value(secret)).toString("hex") } },
            ),
          ]),
        )
        yield* Effect.addFinalizer(() => Effect.sync(() => Jl.killAll()))
        for (const server of servers.values())
          yield* Effect.promise(() => server.line("ready", 60_000))

        const steps: Array<Client.StepInfo> = []
        const events: Array<ClientMachine.Event> = []
        const client = yield* Client.run({
          id: "c1",
          bind: { _tag: "Udp", host: "127.0.0.1", port: 0 },
          servers: members.map((member) => ({ id: member.id, address: member.client })),
          poolSecret: secret,
          product: "cad",
          heartbeatInterval: heartbeatIntervalMs,
          onStep: (info) => Effect.sync(() => void steps.push(info)),
        })
        yield* client.events.pipe(
          Stream.runForEach((event) => Effect.sync(() => void events.push(event))),
          Effect.forkScoped,
        )
        yield* until("granted", () => events.some((event) => event._tag === "Granted"), 30_000)
        const holder = (yield* client.state).server!
        const stepsBefore = steps.length
        servers.get(holder)!.kill("SIGKILL")
        yield* Effect.promise(() => servers.get(holder)!.exit())
        yield* until(
          "re-attached",
          () => events.some((event) => event._tag === "Reattached"),
          30_000,
        )

        // The report may come after the timed walk: waited for (bounded), not raced.
        const report = () =>
          steps
            .slice(stepsBefore)
            .find(
              (step) => step.input._tag === "Command" && step.input.command._tag === "Unreachable",
            )
        yield* until("a port-unreachable report stepped", () => report() !== undefined, 10_000)
        expect(report()?.input, `the report of ${holder}'s closed port`).toMatchObject({
          _tag: "Command",
          command: { _tag: "Unreachable", server: holder },
        })
        expect(events.find((event) => event._tag === "Reattached")).toMatchObject({
          previous: holder,
        })
      }).pipe(Effect.scoped, Effect.provide(NodeDatagram.layer)),
    120_000,
  )
})
