/**
 * Seed 000, the port election: 8 copies of a worker program elect a supervisor by binding
 * one abstract socket and share a machine-wide semaphore of 3 permits through it. The
 * supervisor is SIGKILLed three times (a replacement is started each time, so there are
 * always 8). Measured: the time from each SIGKILL until a new supervisor is elected and
 * every survivor is registered with it. Checked: exactly one supervisor after each
 * failover, and never more than 3 holders of the semaphore at once.
 *
 * @since 0.1.0
 */
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { type Child, makeGroup, monotonicMs, waitFor } from "../processes.ts"
import type { Row, Scenario, ScenarioContext } from "../Scenario.ts"
import type { WorkerConfig, WorkerReport } from "../workers/electionWorker.ts"

const workerPath = fileURLToPath(new URL("../workers/electionWorker.ts", import.meta.url))

/** @since 0.1.0 @category models */
export interface Settings {
  readonly instances: number
  readonly slots: number
  readonly holdMs: number
  readonly pauseMs: number
  readonly failovers: number
  /** Semaphore traffic between failovers, so each one happens with permits held. */
  readonly steadyMs: number
  /** A failover slower than this fails the row (the design target is p99 < 100 ms). */
  readonly failoverBoundMs: number
  /** Time allowed for processes to start and register. */
  readonly startBoundMs: number
}

/** @since 0.1.0 */
export const defaultSettings: Settings = {
  instances: 8,
  slots: 3,
  holdMs: 100,
  pauseMs: 20,
  failovers: 3,
  // Longer than the library's default grace period (1,000 ms): a new supervisor that must
  // wait for missing members grants again within it, and that is still a live failover.
  steadyMs: 1_500,
  failoverBoundMs: 5_000,
  // Eight Node processes load Effect and register at once: seconds of CPU each on a small,
  // busy machine. A start this slow is a slow machine, not a failed election.
  startBoundMs: 60_000,
}

interface Hold {
  readonly label: string
  readonly startMs: number
  endMs: number | undefined
  lost: boolean
}

interface Worker {
  readonly label: string
  readonly child: Child
  instanceId: string | undefined
  role: "starting" | "supervisor" | "subordinate" | "electing" | "dead"
  firstRole: "supervisor" | "subordinate" | undefined
  supervisorId: string | undefined
  readonly events: Array<Extract<WorkerReport, { type: "event" }>>
  killedAtMs: number | undefined
  error: string | undefined
}

/** The hold intervals most open at one instant; open intervals end at `openEndMs`. */
export const maxConcurrent = (
  holds: ReadonlyArray<{ readonly startMs: number; readonly endMs: number | undefined }>,
  openEndMs: number,
): number => {
  const points: Array<readonly [number, number]> = []
  for (const hold of holds) points.push([hold.startMs, 1], [hold.endMs ?? openEndMs, -1])
  // At one instant, ends before starts: a release comes before the grant it enables.
  points.sort((a, b) => a[0] - b[0] || a[1] - b[1])
  let open = 0
  let most = 0
  for (const [, delta] of points) {
    open += delta
    most = Math.max(most, open)
  }
  return most
}

const round = (ms: number) => Math.round(ms * 10) / 10

/**
 * Runs the scenario with `settings` (the showcase uses the defaults; tests may shorten).
 *
 * @since 0.1.0
 */
export const runPortElection = async (
  context: ScenarioContext,
  settings: Settings = defaultSettings,
): Promise<ReadonlyArray<Row>> => {
  const { log } = context
  const group = makeGroup()
  const dir = mkdtempSync(join(tmpdir(), "understudy-showcase-"))
  const address = `unix://@understudy-showcase-${randomBytes(8).toString("hex")}`
  const workers: Array<Worker> = []
  const holds: Array<Hold> = []
  const rows: Array<Row> = []
  let nextLabel = 0

  const start = (): Worker => {
    const label = `w${nextLabel++}`
    const config: WorkerConfig = {
      label,
      program: "understudy-showcase-port-election",
      address,
      secretPath: join(dir, "secret"),
      resource: "slots",
      limit: settings.slots,
      holdMs: settings.holdMs,
      pauseMs: settings.pauseMs,
      lifetimeMs: 120_000,
    }
    const open = new Map<number, Hold>()
    const worker: Worker = {
      label,
      child: group.spawnScript(label, workerPath, [JSON.stringify(config)], (line) => {
        let report: WorkerReport
        try {
          report = JSON.parse(line) as WorkerReport
        } catch {
          return
        }
        switch (report.type) {
          case "ready":
            worker.instanceId = report.instanceId
            worker.firstRole = report.role
            if (worker.role === "starting") {
              worker.role = report.role
              worker.supervisorId = report.supervisorId
            }
            return
          case "event":
            worker.events.push(report)
            if (report.tag === "Elected") {
              worker.role = "supervisor"
              worker.supervisorId = report.supervisorId
            } else if (report.tag === "BecameSubordinate") {
              worker.role = "subordinate"
              worker.supervisorId = report.supervisorId
            } else if (report.tag === "SupervisorLost") {
              worker.role = "electing"
              worker.supervisorId = undefined
            }
            return
          case "holdStart": {
            const hold: Hold = { label, startMs: report.atMs, endMs: undefined, lost: false }
            open.set(report.turn, hold)
            holds.push(hold)
            return
          }
          case "holdEnd": {
            const hold = open.get(report.turn)
            if (hold === undefined) return
            hold.endMs = report.atMs
            hold.lost = report.lost
            open.delete(report.turn)
            return
          }
          case "error":
            worker.error = report.message
            return
        }
      }),
      instanceId: undefined,
      role: "starting",
      firstRole: undefined,
      supervisorId: undefined,
      events: [],
      killedAtMs: undefined,
      error: undefined,
    }
    workers.push(worker)
    void worker.child.exited.then(() => {
      if (worker.role !== "dead") {
        worker.role = "dead"
        worker.killedAtMs ??= monotonicMs()
      }
    })
    return worker
  }

  const alive = () => workers.filter((w) => w.role !== "dead")
  const failedWorker = () => workers.find((w) => w.error !== undefined)
  const supervisors = () => alive().filter((w) => w.role === "supervisor")

  /** Every live worker is registered with one and the same supervisor. */
  const converged = (): Worker | undefined => {
    const failed = failedWorker()
    if (failed !== undefined) throw new Error(`${failed.label} failed: ${failed.error}`)
    const live = alive()
    const leaders = live.filter((w) => w.role === "supervisor")
    if (leaders.length !== 1) return undefined
    const leader = leaders[0]!
    return live.every(
      (w) => w === leader || (w.role === "subordinate" && w.supervisorId === leader.instanceId),
    )
      ? leader
      : undefined
  }

  try {
    log(`${settings.instances} workers join ${address}, semaphore "slots" of ${settings.slots}`)
    for (let i = 0; i < settings.instances; i++) start()
    const first = await waitFor(
      "every worker registered with one supervisor",
      converged,
      settings.startBoundMs,
    )
    // The first role is reported in "ready" (it came before the events were subscribed).
    const initialElected = workers.reduce(
      (n, w) =>
        n +
        w.events.filter((e) => e.tag === "Elected").length +
        (w.firstRole === "supervisor" ? 1 : 0),
      0,
    )
    log(
      `supervisor ${first.label} (pid ${first.child.pid}); ${settings.instances - 1} subordinates`,
    )
    rows.push({
      scenario: "port-election: first election",
      failoverMs: undefined,
      invariant: "exactly one supervisor, every other instance registered with it",
      ok: supervisors().length === 1 && initialElected === 1,
      detail: `${settings.instances} instances, ${initialElected} elected`,
    })
    await sleep(settings.steadyMs)

    for (let round_ = 1; round_ <= settings.failovers; round_++) {
      const victim = supervisors()[0]
      if (victim === undefined) throw new Error("no supervisor to kill")
      const holdsBefore = holds.length
      const killedAtMs = monotonicMs()
      victim.child.process.kill("SIGKILL")
      victim.role = "dead"
      victim.killedAtMs = killedAtMs
      log(
        `failover ${round_}/${settings.failovers}: SIGKILL supervisor ${victim.label} (pid ${victim.child.pid})`,
      )
      const survivors = alive()
      const leader = await waitFor(
        `failover ${round_}: a new supervisor with every survivor registered`,
        converged,
        settings.failoverBoundMs,
      )
      // Recovery time by the workers' own clocks: the new supervisor's Elected, and the
      // last survivor's BecameSubordinate naming it.
      const electedAt = leader.events.find((e) => e.tag === "Elected" && e.atMs > killedAtMs)?.atMs
      const registeredAt = survivors
        .filter((w) => w !== leader)
        .map(
          (w) =>
            w.events.find(
              (e) =>
                e.tag === "BecameSubordinate" &&
                e.supervisorId === leader.instanceId &&
                e.atMs > killedAtMs,
            )?.atMs,
        )
      const complete = electedAt !== undefined && registeredAt.every((at) => at !== undefined)
      const recoveredAt = Math.max(
        electedAt ?? Number.NaN,
        ...registeredAt.map((at) => at ?? Number.NaN),
      )
      const failoverMs = complete ? recoveredAt - killedAtMs : undefined
      // Split brain would show as more than one Elected after the kill, even if it healed.
      const electedCount = survivors.reduce(
        (n, w) => n + w.events.filter((e) => e.tag === "Elected" && e.atMs > killedAtMs).length,
        0,
      )
      // Give a competing supervisor, if there were one, time to show itself.
      await sleep(50)
      const supervisorsNow = supervisors().length
      const ok =
        complete &&
        electedCount === 1 &&
        supervisorsNow === 1 &&
        failoverMs! > 0 &&
        failoverMs! < settings.failoverBoundMs
      const detectedAt = Math.min(
        ...survivors.map(
          (w) =>
            w.events.find((e) => e.tag === "SupervisorLost" && e.atMs > killedAtMs)?.atMs ??
            Number.POSITIVE_INFINITY,
        ),
      )
      log(
        `  loss seen +${round(detectedAt - killedAtMs)} ms, ` +
          `new supervisor ${leader.label} elected +${round(electedAt! - killedAtMs)} ms, ` +
          `all ${survivors.length - 1} survivors registered +${failoverMs === undefined ? "?" : round(failoverMs)} ms`,
      )
      rows.push({
        scenario: `port-election: SIGKILL supervisor ${round_}/${settings.failovers}`,
        failoverMs,
        invariant: "exactly one supervisor after the failover, every survivor registered with it",
        ok,
        detail: `${electedCount} elected, ${supervisorsNow} supervising, ${survivors.length} survivors`,
      })
      const replacement = start()
      log(`  replacement ${replacement.label} starts`)
      await waitFor(
        `replacement ${replacement.label} registered`,
        () => (converged() !== undefined && replacement.role === "subordinate" ? true : undefined),
        settings.startBoundMs,
      )
      await sleep(settings.steadyMs)
      const progressed = holds.slice(holdsBefore).some((h) => h.startMs > killedAtMs)
      if (!progressed) throw new Error(`no permit was granted after failover ${round_}`)
    }

    const endedAtMs = monotonicMs()
    await group.killAll()
    // A hold a killed worker never ended, ended when it was killed (or at the end).
    const closedHolds = holds.map((hold) => ({
      startMs: hold.startMs,
      endMs: hold.endMs ?? workers.find((w) => w.label === hold.label)?.killedAtMs ?? endedAtMs,
    }))
    const most = maxConcurrent(closedHolds, endedAtMs)
    const lost = holds.filter((h) => h.lost).length
    log(`${holds.length} holds in all, at most ${most} at once, ${lost} permits lost`)
    rows.push({
      scenario: "port-election: semaphore across failovers",
      failoverMs: undefined,
      invariant: `the semaphore never had more than ${settings.slots} holders at once`,
      ok: most <= settings.slots && holds.length > 0,
      detail: `${holds.length} holds by ${workers.length} instances, at most ${most} at once, ${lost} lost`,
    })
    return rows
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    const stderr = workers
      .map((w) => w.child.stderr().trim())
      .filter((text) => text.length > 0)
      .slice(0, 2)
      .join(" | ")
    rows.push({
      scenario: "port-election",
      failoverMs: undefined,
      invariant: "the scenario ran to its end",
      ok: false,
      detail: stderr.length > 0 ? `${message}; worker stderr: ${stderr.slice(0, 500)}` : message,
    })
    return rows
  } finally {
    await group.killAll()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** @since 0.1.0 */
export const scenario: Scenario = {
  name: "port-election",
  description:
    "8 instances elect a supervisor on one socket and share a semaphore of 3; the supervisor is SIGKILLed 3 times",
  run: (context) => runPortElection(context),
}
