/**
 * `serve --data-dir DIR`: crash consistency of the whole group. A name server and 3 servers
 * on loopback, each with its write-ahead log; two clients write distinct keys through the
 * HTTP API (following redirects) while, at a random point, every server is SIGKILLed at
 * once. All three start again from their logs alone, and every write that was acknowledged
 * before the crash is read back (linearizable reads from the new master). Without the logs
 * the restarted group is empty. `SERVER_GROUP_CRASH_ROUNDS=<n>` sets the rounds (default 2).
 */

import { randomInt } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { JsonLinesProcess } from "@understudy/testkit"
import { group, startNameServer } from "./support/group.ts"

const rounds = Number(process.env.SERVER_GROUP_CRASH_ROUNDS ?? "2")

const directory = fs.mkdtempSync(path.join(os.tmpdir(), "understudy-server-group-wal-"))

afterAll(async () => {
  JsonLinesProcess.killAll()
  await sleep(100)
  fs.rmSync(directory, { recursive: true, force: true })
})

describe("server-group --data-dir", () => {
  it(`${rounds} rounds: every server SIGKILLed at once during writes, restarted from its log: every acknowledged write is there`, async () => {
    const { proc: nameServer, store } = await startNameServer(60_000)
    const ids = ["1", "2", "3"]
    const { servers, start, servingMaster } = await group({
      ids,
      store,
      args: ["--insecure", "--data-dir", directory],
      readyTimeoutMs: 60_000,
    })
    /** The serving master's HTTP base URL (30 s: a liveness bound on a loaded machine). */
    const masterUrl = async () => {
      const id = await servingMaster(30_000)
      return id === undefined ? undefined : servers.get(id)!.http
    }
    await Promise.all(ids.map(start))

    const acknowledged: Array<string> = []
    let checked = 0
    for (let round = 1; round <= rounds; round++) {
      expect(await masterUrl()).toBeDefined()
      let crashing = false
      const writer = async (name: string) => {
        for (let n = 0; !crashing; n++) {
          const key = `r${round}-${name}-${n}`
          const http = [...servers.values()][n % servers.size]!.http
          try {
            const response = await fetch(`${http}/kv/${key}`, {
              method: "PUT",
              body: key,
              headers: { "x-client-id": `${name}-${round}`, "x-request-id": String(n + 1) },
              signal: AbortSignal.timeout(3_000),
            })
            await response.body?.cancel()
            // Acknowledged only if the answer arrived before the crash began.
            if (response.status === 200 && !crashing) acknowledged.push(key)
          } catch {
            // Refused or cut by the crash: outcome unknown, not counted.
          }
        }
      }
      const before = acknowledged.length
      const writers = [writer("a"), writer("b")]
      // A random point: after some writes were acknowledged (bounded wait).
      const target = before + 3 + randomInt(15)
      for (let i = 0; i < 2_400 && acknowledged.length < target; i++) await sleep(25)
      expect(acknowledged.length).toBeGreaterThanOrEqual(target)
      crashing = true
      for (const { proc } of servers.values()) proc.kill("SIGKILL")
      await Promise.all([...servers.values()].map(({ proc }) => proc.exit()))
      await Promise.all(writers)
      servers.clear()
      await Promise.all(ids.map(start))
      expect(await masterUrl()).toBeDefined()
      for (const key of acknowledged) {
        // 200 with the value, or 404 if it was lost; anything else (a master change under
        // load: 503, a cut connection) is asked again, bounded.
        let found: { status: number; body: unknown } | undefined
        for (let attempt = 0; attempt < 100 && found === undefined; attempt++) {
          const master = await masterUrl()
          const response = await fetch(`${master}/kv/${key}`, {
            signal: AbortSignal.timeout(5_000),
          }).catch(() => undefined)
          if (response?.status === 200 || response?.status === 404) {
            found = { status: response.status, body: await response.json() }
          } else {
            await response?.body?.cancel()
            await sleep(50)
          }
        }
        expect({ key, found }).toEqual({ key, found: { status: 200, body: { key, value: key } } })
        checked++
      }
    }
    console.log(
      `crash consistency: ${rounds} whole-group SIGKILLs, ${acknowledged.length} acknowledged writes, ${checked} reads after restarts, none lost`,
    )
    for (const { proc } of servers.values()) proc.kill("SIGTERM")
    nameServer.kill("SIGTERM")
    await Promise.all([...servers.values(), { proc: nameServer }].map(({ proc }) => proc.exit()))
  }, 300_000)
})
