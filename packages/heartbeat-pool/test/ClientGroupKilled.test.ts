/**
 * A `ClientGroup` whose clients' server process is SIGKILLed, over real UDP on loopback:
 * three servers as OS processes (the bench's `serverProcess.ts`), twenty clients in one group
 * in this process, all starting at the first server. Once every client holds its seat there,
 * that process is killed, and this process is held until the killed one is gone (its sockets
 * closed: see `ServerKilled.test.ts`), so the group's next datagram to it draws the kernel's
 * port unreachable. The report walks every client heading there in one batch, and each
 * re-attaches past the killed server. Asserted on the clients' steps, never on durations;
 * waits are for events, bounded generously (a loaded machine).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { JsonLinesProcess as Jl } from "@understudy/testkit"
import { NodeDatagram } from "@understudy/transport"
import { Effect, Stream } from "effect"
import { afterAll } from "vitest"
import type * as Client from "../src/Client.ts"
import * as ClientGroup from "../src/ClientGroup.ts"
import type * as ClientMachine from "../src/ClientMachine.ts"
import { loopbackMembers, signedPool } from "./support/pool.ts"
import { holdUntilGone, serverProcesses, timing, until } from "./support/processes.ts"

const dir = mkdtempSync(join(tmpdir(), "heartbeat-pool-group-killed-"))
afterAll(() => {
  Jl.killAll()
  rmSync(dir, { recursive: true, force: true })
})

const clientCount = 20

describe("a group's server process SIGKILLed", () => {
  it.live(
    "the kernel's report walks every client of the group heading there at once, and each re-attaches",
    () =>
      Effect.gen(function* () {
        const pool = signedPool(clientCount)
        const members = yield* loopbackMembers
        const servers = yield* serverProcesses(members, pool, dir)

        const group = yield* ClientGroup.run({
          bind: { _tag: "Udp", host: "127.0.0.1", port: 0 },
          servers: members.map((member) => ({ id: member.id, address: member.client })),
          poolSecret: pool.secret,
        })
        const events = new Map<string, Array<ClientMachine.Event>>()
        /** The steps that walked a client off the killed server (set once it is killed). */
        const walks: Array<Client.StepInfo> = []
        let killed: string | undefined
        const clients: Array<ClientGroup.Running> = []
        for (let index = 0; index < clientCount; index++) {
          const id = `c${index}`
          events.set(id, [])
          const client = yield* group.add({
            id,
            product: "cad",
            heartbeatInterval: timing.heartbeatIntervalMs,
            onStep: (info) =>
              Effect.sync(() => {
                if (killed !== undefined && info.before?.target === killed)
                  if (info.after.target !== killed) walks.push(info)
              }),
          })
          clients.push(client)
          yield* client.events.pipe(
            Stream.runForEach((event) => Effect.sync(() => void events.get(id)!.push(event))),
            Effect.forkScoped,
          )
        }
        const holding = () =>
          [...events.values()].every((list) =>
            list.some((event) => event._tag === "Granted" || event._tag === "Reattached"),
          )
        yield* until("every client granted", holding, 60_000)
        // Where the clients hold now (a loaded leader's clients may have walked on).
        const states = yield* Effect.forEach(clients, (client) => client.state)
        const count = (server: string) => states.filter((state) => state.server === server).length
        const holder = [...servers.keys()].sort((a, b) => count(b) - count(a))[0]!
        const moving = states.filter((state) => state.server === holder).map((state) => state.self)
        yield* Effect.sync(() => {
          killed = holder
          const process = servers.get(holder)!
          process.kill("SIGKILL")
          holdUntilGone(process.child.pid!)
        })
        yield* Effect.promise(() => servers.get(holder)!.exit())
        const reattached = (id: string) =>
          events.get(id)!.some((event) => event._tag === "Reattached" && event.previous === holder)
        yield* until("re-attached", () => moving.every(reattached), 30_000)

        const context = `killed ${holder}, held ${moving.length} of ${clientCount}`
        expect(moving.length, context).toBeGreaterThan(1)
        const onReport = walks.filter(
          (step) => step.input._tag === "Command" && step.input.command._tag === "Unreachable",
        )
        // The report came (the group's next datagram met a closed port) and walked them all
        // in one batch: one time for all the walks it made.
        expect(onReport.length, context).toBeGreaterThan(0)
        expect(new Set(onReport.map((step) => step.nowMs)).size, context).toBe(1)
        expect(new Set(walks.map((step) => step.node)), context).toEqual(new Set(moving))
      }).pipe(Effect.scoped, Effect.provide(NodeDatagram.layer)),
    120_000,
  )
})
