/**
 * The real-process half of the failover benchmark: `apps/server-group` as OS processes on
 * loopback (a name server and N servers, UDP between the servers, HTTP to clients, every
 * port picked by the OS), the registered master SIGKILLed round after round. Measured: from
 * the SIGKILL to the first write (`PUT /kv/...`, the same client and request id on every
 * retry, 307 redirects followed) that a new master answers. The victim is then restarted
 * (empty, as after a crash) and the group allowed to settle and catch it up before the
 * next round, so every round starts from N healthy servers.
 *
 * The app is found by its package name and started through its declared `server-group` bin;
 * testkit's `ServerGroupProcesses` starts it. Every process it starts, it kills; every wait
 * is bounded.
 *
 * @since 0.1.0
 */
import { createRequire } from "node:module"
import * as Path from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { ServerGroupProcesses as Group, JsonLinesProcess, Ports } from "@understudy/testkit"
import type { Timings } from "./simulate.ts"

/** The app's `server-group` bin, as its package declares it. */
const program = (() => {
  const manifest = createRequire(import.meta.url).resolve(
    "@understudy/app-server-group/package.json",
  )
  const { bin } = createRequire(import.meta.url)(manifest) as { bin: Record<string, string> }
  return Path.join(Path.dirname(manifest), bin["server-group"] as string)
})()

interface Status {
  readonly self: string
  readonly role: "master" | "backup" | "waiting"
  readonly epoch: number
  readonly master: string | null
  readonly serving: boolean
  readonly ready: boolean
  readonly commitSeq: number
  readonly lastSeq: number
}

/** Kills every process still running: on the way out, whatever happened. */
export const killAll = JsonLinesProcess.killAll

/** The figures of one group size. */
export interface ProcessFigures {
  readonly servers: number
  readonly rounds: number
  /** SIGKILL of the master → first write answered by the new master, per round. */
  readonly failoverMs: ReadonlyArray<number>
  /** Rounds with no write answered within the deadline. */
  readonly failed: number
}

/** Starts a name server, for every group size of the run. */
export const startNameServer = async (): Promise<{ store: string; stop: () => Promise<void> }> => {
  const { proc, store } = await Group.startNameServer(program, 30_000)
  return {
    store,
    stop: async () => {
      proc.child.kill("SIGTERM")
      await Promise.race([proc.exit(), sleep(2_000)])
      proc.child.kill("SIGKILL")
    },
  }
}

/**
 * `rounds` SIGKILLs of the master of a group of `count` servers. `deadlineMs` bounds each
 * wait (a failover, a restart, settling).
 */
export const measure = async (options: {
  readonly count: number
  readonly rounds: number
  readonly store: string
  readonly timings: Timings
  readonly deadlineMs: number
  /** The servers' read mode (`--reads`); with `lease`, a new master waits out the old lease. */
  readonly reads: "index" | "lease"
  readonly log: (line: string) => void
}): Promise<ProcessFigures> => {
  const { count, rounds, store, timings, deadlineMs } = options
  const group = `bench-${count}-${options.reads}`
  const ids = Array.from({ length: count }, (_, i) => `s${i + 1}`)
  // s1 is the most capable (index 1).
  const { servers, start } = await Group.group({
    program,
    ids,
    store,
    args: [
      "--insecure",
      "--group",
      group,
      "--detect-ms",
      String(timings.detectionPeriodMs),
      "--inquiry-ms",
      String(timings.inquiryTimeoutMs),
      "--base-ms",
      String(timings.baseDelayMs),
      "--floor-ms",
      String(timings.floorDelayMs),
      "--reads",
      options.reads,
    ],
    readyTimeoutMs: 30_000,
    // Only the first lines (`ready`) are read: the election events are not kept.
    linesMax: 4,
  })

  const statuses = async () =>
    (
      await Promise.all(
        [...servers.values()]
          .filter((server) => !server.proc.exited)
          .map((server) => Ports.getJson<Status>(`${server.http}/status`)),
      )
    ).filter((status): status is Status => status !== undefined)

  /** One serving, ready master above `aboveEpoch`, followed by all `count` servers, caught up. */
  const settled = async (aboveEpoch: number): Promise<Status> => {
    const deadline = performance.now() + deadlineMs
    while (performance.now() < deadline) {
      const all = await statuses()
      const masters = all.filter((status) => status.role === "master")
      const master = masters[0]
      if (
        masters.length === 1 &&
        master!.serving &&
        master!.ready &&
        master!.epoch > aboveEpoch &&
        all.length === count &&
        all.every(
          (s) =>
            s.master === master!.self &&
            s.epoch === master!.epoch &&
            s.lastSeq >= master!.commitSeq,
        )
      ) {
        return master!
      }
      await sleep(20)
    }
    throw new Error(
      `${group}: not settled within ${deadlineMs} ms: ${JSON.stringify(await statuses())}`,
    )
  }

  const failoverMs: Array<number> = []
  let failed = 0
  try {
    await Promise.all(ids.map(start))
    let master = await settled(0)
    let requestId = 0
    for (let round = 0; round < rounds; round++) {
      const victim = servers.get(master.self)!
      const survivors = [...servers].filter(([id]) => id !== master.self).map(([, s]) => s.http)
      requestId++
      const killedAt = performance.now()
      victim.proc.child.kill("SIGKILL")
      let answeredAt: number | undefined
      // Writes round-robin over the survivors, redirects followed, until one is answered.
      for (let attempt = 0; performance.now() - killedAt < deadlineMs; attempt++) {
        const target = survivors[attempt % survivors.length]!
        try {
          const response = await fetch(`${target}/kv/${group}-round-${round}`, {
            method: "PUT",
            body: `value-${round}`,
            headers: { "x-client-id": `${group}-bench`, "x-request-id": String(requestId) },
            redirect: "follow",
            signal: AbortSignal.timeout(1_000),
          })
          await response.arrayBuffer()
          if (response.status === 200) {
            answeredAt = performance.now()
            break
          }
        } catch {
          // The dead master's address (a redirect to it), or a time-out: retry.
        }
        await sleep(2)
      }
      if (answeredAt === undefined) failed++
      else failoverMs.push(answeredAt - killedAt)
      await victim.proc.exit()
      await start(master.self)
      const next = await settled(master.epoch)
      options.log(
        `  ${group} round ${round + 1}/${rounds}: killed ${master.self}, write answered after ${answeredAt === undefined ? "(none)" : `${Math.round(answeredAt - killedAt)} ms`}, new master ${next.self}`,
      )
      master = next
    }
  } finally {
    for (const server of servers.values()) server.proc.child.kill("SIGKILL")
    await Promise.all([...servers.values()].map((server) => server.proc.exit()))
  }
  return { servers: count, rounds, failoverMs, failed }
}
