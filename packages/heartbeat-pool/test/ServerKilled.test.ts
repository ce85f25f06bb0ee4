/**
 * A client whose server process is SIGKILLed, over real UDP on loopback: three servers as OS
 * processes (the bench's `serverProcess.ts`), one client (`Client.run`) in this process. Once
 * the client holds its seat, the process holding it is killed: the kernel answers the
 * client's next heartbeat with an ICMP port unreachable, the kernel's report reaches the client
 * machine as an `Unreachable` command, and the client re-attaches. Asserted on the client's
 * steps, never on durations; waits are for events, bounded generously (a loaded machine).
 *
 * What is checked here is the real path of the report (kernel, connected socket, endpoint,
 * `Client`'s command), with the client's default timings and no race: the kill is made while
 * the client has no message unanswered, and this process (the client's) is held until the
 * killed one is gone (a zombie: its sockets closed), so the client's next message to it
 * meets a closed port and draws the report. (Without the hold, a dying process slow to go at
 * load ~30 absorbed the messages sent meanwhile, and the client walked on its timer without
 * any report.) That a report walks at once, before the timed detection, is the machine's
 * behaviour, checked on simulated time (`ClientDetection.sim.test.ts`, `ClientMachine.test.ts`).
 * Without `reportUnreachable` no report is stepped and the test fails.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { JsonLinesProcess as Jl } from "@understudy/testkit"
import { NodeDatagram } from "@understudy/transport"
import { Effect, Stream } from "effect"
import { afterAll } from "vitest"
import * as Client from "../src/Client.ts"
import type * as ClientMachine from "../src/ClientMachine.ts"
import { loopbackMembers, signedPool } from "./support/pool.ts"
import { holdUntilGone, serverProcesses, timing, until } from "./support/processes.ts"

const dir = mkdtempSync(join(tmpdir(), "heartbeat-pool-killed-"))
afterAll(() => {
  Jl.killAll()
  rmSync(dir, { recursive: true, force: true })
})

describe("a server process SIGKILLed", () => {
  it.live(
    "its client hears of the closed port (the kernel's report reaches the machine) and re-attaches",
    () =>
      Effect.gen(function* () {
        const pool = signedPool(2)
        const members = yield* loopbackMembers
        const servers = yield* serverProcesses(members, pool, dir)

        const steps: Array<Client.StepInfo> = []
        const events: Array<ClientMachine.Event> = []
        const client = yield* Client.run({
          id: "c1",
          bind: { _tag: "Udp", host: "127.0.0.1", port: 0 },
          servers: members.map((member) => ({ id: member.id, address: member.client })),
          poolSecret: pool.secret,
          product: "cad",
          heartbeatInterval: timing.heartbeatIntervalMs,
          onStep: (info) => Effect.sync(() => void steps.push(info)),
        })
        yield* client.events.pipe(
          Stream.runForEach((event) => Effect.sync(() => void events.push(event))),
          Effect.forkScoped,
        )
        yield* until("granted", () => events.some((event) => event._tag === "Granted"), 30_000)
        // Killed, in one synchronous block, at a moment the client has no message unanswered.
        let holder: string | undefined
        let stepsBefore = 0
        const killHolder = Effect.sync(() => {
          const state = Effect.runSync(client.state)
          if (state.phase !== "holding" || state.missed !== 0 || state.server === undefined)
            return false
          holder = state.server
          stepsBefore = steps.length
          const killed = servers.get(holder)!
          killed.kill("SIGKILL")
          holdUntilGone(killed.child.pid!)
          return true
        })
        for (let tries = 0; !(yield* killHolder); tries++) {
          if (tries > 1_000) return yield* Effect.die(new Error("never idle between heartbeats"))
          yield* Effect.sleep(5)
        }
        if (holder === undefined) return yield* Effect.die(new Error("no holder"))
        yield* Effect.promise(() => servers.get(holder!)!.exit())
        yield* until(
          "re-attached",
          () => events.some((event) => event._tag === "Reattached"),
          30_000,
        )

        const report = () =>
          steps
            .slice(stepsBefore)
            .find(
              (step) => step.input._tag === "Command" && step.input.command._tag === "Unreachable",
            )
        // Certain to come (the client's next message met a closed port), maybe after the walk.
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
