/**
 * The `apps/server-group` program as real OS processes on loopback: a name server, 5
 * servers and the load client. Round after round the registered master is SIGKILLed
 * (then restarted with an empty log) or SIGSTOPped (then continued), under load. Checked
 * from outside, through `/status` and the load client's record: at most one master per
 * epoch, exactly one master once the dust settles, and every acknowledged write is on the
 * final master. `STAGGERED_PROCESS_ROUNDS=<n>` changes the number of rounds (default 50); the
 * liveness bound is 60 s plus 5 s a round (a round takes ~4 s on a loaded 2-core machine).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { JsonLinesProcess, Ports } from "@understudy/testkit"
import * as Group from "../apps/server-group/test/support/group.ts"

const rounds = Number(process.env.STAGGERED_PROCESS_ROUNDS ?? "50")

interface Status {
  readonly self: string
  readonly role: "master" | "backup" | "waiting"
  readonly epoch: number
  readonly master: string | null
  readonly serving: boolean
  readonly ready: boolean
  readonly commitSeq: number
  readonly appliedSeq: number
  readonly lastSeq: number
}

afterAll(async () => {
  JsonLinesProcess.killAll()
  await sleep(100)
})

describe("server-group processes", () => {
  it(
    `5 servers under load: the master SIGKILLed or SIGSTOPped ${rounds} times`,
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "understudy-server-group-"))
      try {
        const { store } = await Group.startNameServer(60_000)
        const ids = ["1", "2", "3", "4", "5"]
        // Server 1 is the most capable; 5 the least.
        const { servers, start } = await Group.group({
          ids,
          store,
          args: ["--insecure"],
          readyTimeoutMs: 60_000,
        })
        // SIGSTOPped ones: not asked for their status.
        const stopped = new Set<string>()
        await Promise.all(ids.map(start))

        // Every /status read anywhere in this test is recorded: at most one master per epoch.
        const mastersByEpoch = new Map<number, Set<string>>()
        const statuses = async () => {
          const all = (
            await Promise.all(
              [...servers]
                .filter(([id, server]) => !stopped.has(id) && !server.proc.exited)
                .map(([, server]) => Ports.getJson<Status>(`${server.http}/status`)),
            )
          ).filter((status): status is Status => status !== undefined)
          for (const status of all) {
            if (status.role !== "master") continue
            const set = mastersByEpoch.get(status.epoch) ?? new Set()
            set.add(status.self)
            mastersByEpoch.set(status.epoch, set)
          }
          return all
        }
        // The observer reads them all the time, not only while the test waits for a master.
        let observing = true
        const observe = async () => {
          for (let i = 0; observing && i < 100_000; i++) {
            await statuses()
            await sleep(25)
          }
        }
        const observer = observe()

        /** One serving, ready master above `aboveEpoch` that every live server follows. */
        const settled = async (aboveEpoch: number, timeoutMs: number, everyone = true) => {
          const deadline = performance.now() + timeoutMs
          while (performance.now() < deadline) {
            const all = await statuses()
            const masters = all.filter((status) => status.role === "master")
            const master = masters[0]
            if (
              masters.length === 1 &&
              master!.serving &&
              master!.ready &&
              master!.epoch > aboveEpoch &&
              (!everyone ||
                (all.length === servers.size &&
                  all.every((s) => s.master === master!.self && s.epoch === master!.epoch)))
            ) {
              return { master: master!, all }
            }
            await sleep(20)
          }
          throw new Error(`not settled within ${timeoutMs} ms: ${JSON.stringify(await statuses())}`)
        }

        let { master } = await settled(0, 20_000)
        const record = join(dir, "acked.jsonl")
        const load = Group.spawn([
          "load",
          "--store",
          store,
          "--duration",
          "600s",
          "--rate",
          "100",
          "--concurrency",
          "4",
          "--record",
          record,
        ])
        await sleep(500)

        const failoverMs: Array<number> = []
        for (let round = 0; round < rounds; round++) {
          const victim = servers.get(master.self)!
          const signal: NodeJS.Signals = round % 2 === 0 ? "SIGKILL" : "SIGSTOP"
          const killedAt = performance.now()
          stopped.add(master.self)
          victim.proc.kill(signal)
          const next = await settled(master.epoch, 10_000, false)
          failoverMs.push(performance.now() - killedAt)
          expect(next.master.self).not.toBe(master.self)
          if (signal === "SIGKILL") {
            await new Promise<void>((resolve) =>
              victim.proc.exited ? resolve() : victim.proc.child.once("exit", () => resolve()),
            )
            await start(master.self)
          } else {
            victim.proc.kill("SIGCONT")
          }
          // Restarted or continued: observed again.
          stopped.delete(master.self)
          // Everyone back, following the new master, before the next round.
          master = (await settled(master.epoch, 20_000)).master
          // The restarted server holds the committed log again: the next kill leaves a
          // majority that holds every acknowledged write.
          const deadline = performance.now() + 20_000
          for (;;) {
            const all = await statuses()
            const commit = all.find((s) => s.self === master.self)?.commitSeq ?? 0
            if (all.length === 5 && all.every((s) => s.lastSeq >= commit)) break
            if (performance.now() > deadline) throw new Error("a server did not catch up")
            await sleep(20)
          }
        }

        load.kill("SIGINT")
        const summary = (await load.line("summary", 20_000)) as {
          acknowledged: number
          errors: number
          maxUnavailableMs: number
          unavailable: ReadonlyArray<unknown>
        }
        observing = false
        await observer

        // Exactly one master after the dust settles, and it holds every acknowledged write.
        const final = await settled(0, 10_000)
        const dump = await Ports.getJson<{ entries: Record<string, string> }>(
          `${servers.get(final.master.self)!.http}/kv`,
          5_000,
        )
        const acked = readFileSync(record, "utf8")
          .split("\n")
          .filter((text) => text.length > 0)
          .map((text) => JSON.parse(text) as { key: string; value: string })
        const lost = acked.filter((write) => dump?.entries[write.key] !== write.value)
        const duplicated = [...mastersByEpoch].filter(([, set]) => set.size > 1)

        console.log(
          JSON.stringify({
            rounds,
            failoverMs: {
              min: Math.round(Math.min(...failoverMs)),
              median: Math.round([...failoverMs].sort((a, b) => a - b)[failoverMs.length >> 1]!),
              max: Math.round(Math.max(...failoverMs)),
            },
            acknowledged: acked.length,
            loadErrors: summary.errors,
            windows: summary.unavailable.length,
            maxUnavailableMs: summary.maxUnavailableMs,
            epochs: mastersByEpoch.size,
          }),
        )
        expect(duplicated).toEqual([])
        expect(mastersByEpoch.size).toBeGreaterThanOrEqual(rounds + 1)
        expect(acked.length).toBe(summary.acknowledged)
        expect(acked.length).toBeGreaterThan(rounds * 10)
        expect(lost).toEqual([])
        expect(final.all.filter((s) => s.role === "master")).toHaveLength(1)
      } finally {
        JsonLinesProcess.killAll()
        rmSync(dir, { recursive: true, force: true })
      }
    },
    60_000 + rounds * 5_000,
  )
})
