/**
 * Jepsen-style: a name server and 3 `server-group` processes on loopback; one client per
 * server reads and writes registers through the HTTP API (following redirects to the master,
 * exactly-once ids), while round after round the nemesis SIGKILLs the master (then restarts
 * it, empty), SIGSTOPs it past the time-outs (then continues it: it must not answer a read
 * from its old state), or pauses the name server. Every operation is recorded with its
 * real-time invocation and response; the linearizability checker verifies each key's
 * history. It runs twice, once with read-index reads and once with leader-lease reads
 * (`--reads lease`): 50 rounds in all. `SERVER_GROUP_JEPSEN_ROUNDS=<n>` sets the rounds of each
 * (default 25, about a minute and a half; the time-out allows 8 s a round);
 * `SERVER_GROUP_JEPSEN_READS=index|lease` runs only that one. One of the repository's
 * cross-package suites: it runs the app's processes with the packages' builds.
 */

import { setTimeout as sleep } from "node:timers/promises"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { JsonLinesProcess } from "@understudy/testkit"
import { group, startNameServer } from "../apps/server-group/test/support/group.ts"
import { check, type Operation } from "./support/linearizability.ts"

const rounds = Number(process.env.SERVER_GROUP_JEPSEN_ROUNDS ?? "25")
/** Both read modes, each for `rounds` rounds, unless the variable names one. */
const readModes: ReadonlyArray<"index" | "lease"> =
  process.env.SERVER_GROUP_JEPSEN_READS === "lease"
    ? ["lease"]
    : process.env.SERVER_GROUP_JEPSEN_READS === "index"
      ? ["index"]
      : ["index", "lease"]
const keys = ["a", "b", "c"]
/** A request unanswered this long is abandoned: a write's outcome is then unknown. */
const requestTimeoutMs = 4_000

afterAll(async () => {
  JsonLinesProcess.killAll()
  await sleep(100)
})

describe("server-group under a nemesis (Jepsen-style)", () => {
  for (const reads of readModes) {
    it(
      `${rounds} rounds of SIGKILL / SIGSTOP of the master and name-server pauses, ${reads === "lease" ? "leader-lease" : "read-index"} reads: every key's history is linearizable`,
      async () => {
        const { proc: nameServer, store } = await startNameServer(60_000)
        const ids = ["1", "2", "3"]
        const { servers, start, servingMaster } = await group({
          ids,
          store,
          args: ["--insecure", "--reads", reads],
          readyTimeoutMs: 60_000,
        })
        await Promise.all(ids.map((id) => start(id)))

        expect(await servingMaster(20_000)).toBeDefined()

        // The clients: one per server, each with one request outstanding at a time.
        const history: Array<Operation> = []
        let running = true
        let failedOps = 0
        const client = async (id: string) => {
          const clientId = `c${id}`
          let requestId = 0
          for (let n = 0; running && n < 100_000; n++) {
            const key = keys[n % keys.length]!
            const write = n % 2 === 0
            const value = `${clientId}-${n}`
            const server = servers.get(id)!
            const startMs = performance.now()
            let response: Response | undefined
            try {
              response = await fetch(`${server.http}/kv/${key}`, {
                method: write ? "PUT" : "GET",
                ...(write
                  ? {
                      body: value,
                      headers: { "x-client-id": clientId, "x-request-id": `${++requestId}` },
                    }
                  : {}),
                redirect: "follow",
                signal: AbortSignal.timeout(requestTimeoutMs),
              })
            } catch {
              response = undefined
            }
            const endMs = performance.now()
            if (write) {
              // Anything but a 200 may still have been applied: its outcome is unknown.
              const ok = response?.status === 200
              if (!ok) failedOps++
              history.push({
                key,
                kind: "write",
                value,
                startMs,
                endMs: ok ? endMs : Number.POSITIVE_INFINITY,
                client: clientId,
              })
            } else if (response?.status === 200 || response?.status === 404) {
              const body = (await response.json()) as { value: string | null }
              history.push({
                key,
                kind: "read",
                value: body.value,
                startMs,
                endMs,
                client: clientId,
              })
            } else {
              failedOps++
            }
            await response?.body?.cancel().catch(() => undefined)
            if (response === undefined || response.status >= 500) await sleep(50)
          }
        }
        const clients = ids.map(client)

        const faults: Array<string> = []
        for (let round = 0; round < rounds; round++) {
          await sleep(400)
          const master = await servingMaster(15_000)
          expect(master, `round ${round}: no master`).toBeDefined()
          const victim = servers.get(master!)!
          switch (round % 3) {
            case 0: {
              faults.push(`SIGKILL ${master}`)
              victim.proc.kill("SIGKILL")
              await sleep(600)
              await start(master!)
              break
            }
            case 1:
              // Past the inquiry time-out and the election: the others elect and commit meanwhile.
              faults.push(`SIGSTOP ${master}`)
              victim.proc.kill("SIGSTOP")
              await sleep(1_500)
              victim.proc.kill("SIGCONT")
              break
            case 2:
              faults.push("SIGSTOP name server")
              nameServer.kill("SIGSTOP")
              await sleep(1_000)
              nameServer.kill("SIGCONT")
              break
          }
        }
        await sleep(500)
        running = false
        await Promise.all(clients)

        const verdict = check(history)
        const completed = history.filter((op) => Number.isFinite(op.endMs)).length
        console.log(
          JSON.stringify({
            rounds,
            faults: faults.length,
            operations: history.length,
            completed,
            reads: history.filter((op) => op.kind === "read").length,
            failedOrUnknown: failedOps,
            linearizable: verdict.ok,
          }),
        )
        if (!verdict.ok) {
          console.log(JSON.stringify(verdict.operations.slice(0, 200)))
        }
        expect(verdict.ok).toBe(true)
        // The run did something: reads and writes completed across the faults.
        expect(completed).toBeGreaterThan(rounds * 5)
      },
      60_000 + rounds * 8_000,
    )
  }
})
