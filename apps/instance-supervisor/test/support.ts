/**
 * Test support: spawn the real CLI with Node 24, record command intervals, and kill every
 * process a test started.
 */

import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Eventually } from "@understudy/testkit"
import { Effect } from "effect"
import { afterAll } from "vitest"
import { parse, programName } from "../src/cli.ts"
import { readRegistry } from "../src/status.ts"

export const mainPath = fileURLToPath(new URL("../src/main.ts", import.meta.url))

/** Monotonic milliseconds, comparable across processes of this machine (CLOCK_MONOTONIC). */
export const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6

export interface Spawned {
  readonly child: ChildProcess
  readonly label: string
  readonly exited: Promise<{ readonly code: number | null; readonly signal: string | null }>
  stdout: string
  stderr: string
}

const spawned = new Set<ChildProcess>()

/**
 * The per-user socket directory every CLI of this test file uses for its default election
 * address (`$XDG_RUNTIME_DIR`): a fresh 0700 directory, so no test leaves socket files in
 * the real one.
 */
export const runtimeDir = mkdtempSync(join(tmpdir(), "instance-supervisor-runtime-"))
afterAll(() => rmSync(runtimeDir, { recursive: true, force: true }))

/** Spawns the CLI; its output is collected, and `killAll` kills it if the test did not. */
export const spawnCli = (
  args: ReadonlyArray<string>,
  label = "cli",
  socketDir: string = runtimeDir,
): Spawned => {
  const child = spawn(process.execPath, [mainPath, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, XDG_RUNTIME_DIR: socketDir },
  })
  spawned.add(child)
  const result: Spawned = {
    child,
    label,
    stdout: "",
    stderr: "",
    exited: new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        spawned.delete(child)
        resolve({ code, signal })
      })
    }),
  }
  child.stdout!.on("data", (chunk: Buffer) => {
    result.stdout += chunk.toString()
  })
  child.stderr!.on("data", (chunk: Buffer) => {
    result.stderr += chunk.toString()
  })
  return result
}

/** Runs the CLI to its end (bounded: a liveness bound, generous for a loaded machine) and gives its exit code and output. */
export const runCli = async (
  args: ReadonlyArray<string>,
  timeoutMs = 30_000,
  socketDir: string = runtimeDir,
) => {
  const cli = spawnCli(args, "cli", socketDir)
  const timer = setTimeout(() => cli.child.kill("SIGKILL"), timeoutMs)
  const exit = await cli.exited
  clearTimeout(timer)
  return { ...exit, stdout: cli.stdout, stderr: cli.stderr }
}

/** SIGKILLs every CLI process still running; their commands die with them (pdeathsig). */
export const killAll = async (): Promise<void> => {
  const waits = [...spawned].map(
    (child) => new Promise<void>((resolve) => child.once("exit", () => resolve())),
  )
  for (const child of spawned) child.kill("SIGKILL")
  await Promise.all(waits)
}

/** A fresh directory with a secret path and a log, and a unique election name. */
export const makeWorkspace = () => {
  const dir = mkdtempSync(join(tmpdir(), "instance-supervisor-test-"))
  return {
    dir,
    name: `test-${randomBytes(6).toString("hex")}`,
    secret: join(dir, "secret"),
    log: join(dir, "intervals.log"),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  }
}

/**
 * A command that appends `start <label> <pid> <ms>` to `log`, sleeps `sleepMs`, appends
 * `end <label> <pid> <ms>` and exits with `exitCode`. Times are monotonic ms.
 */
export const recorder = (log: string, label: string, sleepMs: number, exitCode = 0) => [
  process.execPath,
  "-e",
  `const fs = require("node:fs")
const now = () => Number(process.hrtime.bigint()) / 1e6
const [log, label, sleepMs, code] = process.argv.slice(1)
fs.appendFileSync(log, "start " + label + " " + process.pid + " " + now() + "\\n")
setTimeout(() => {
  fs.appendFileSync(log, "end " + label + " " + process.pid + " " + now() + "\\n")
  process.exit(Number(code))
}, Number(sleepMs))`,
  log,
  label,
  String(sleepMs),
  String(exitCode),
]

export interface Interval {
  readonly label: string
  readonly pid: number
  readonly startMs: number
  /** Undefined while running, or if it was killed before it could write its end. */
  readonly endMs: number | undefined
}

export const readIntervals = (log: string): Array<Interval> => {
  let text = ""
  try {
    text = readFileSync(log, "utf8")
  } catch {
    return []
  }
  const byLabel = new Map<string, { label: string; pid: number; startMs: number; endMs?: number }>()
  for (const line of text.split("\n")) {
    const [kind, label, pid, ms] = line.split(" ")
    if (label === undefined || pid === undefined || ms === undefined) continue
    if (kind === "start") byLabel.set(label, { label, pid: Number(pid), startMs: Number(ms) })
    if (kind === "end") byLabel.get(label)!.endMs = Number(ms)
  }
  return [...byLabel.values()].map((i) => ({ ...i, endMs: i.endMs }))
}

/** Most intervals open at one moment; an interval without an end ends at `openEndMs`. */
export const maxOverlap = (intervals: ReadonlyArray<Interval>, openEndMs: number): number => {
  const points: Array<[number, number]> = []
  for (const i of intervals) {
    points.push([i.startMs, 1], [i.endMs ?? openEndMs, -1])
  }
  // Ends before starts at the same instant: a release precedes the grant it enables.
  points.sort((a, b) => a[0] - b[0] || a[1] - b[1])
  let open = 0
  let most = 0
  for (const [, delta] of points) {
    open += delta
    most = Math.max(most, open)
  }
  return most
}

/**
 * Polls `check` every 25 ms until it gives a value, for at most `timeoutMs` (the test kit's
 * wait). A liveness bound only: a check that runs `status` spawns a CLI, which takes seconds
 * of CPU on a loaded machine (10 s was too short at load 28 with the suite's files in parallel).
 */
export const waitFor = <A>(
  what: string,
  check: () => A | undefined | Promise<A | undefined>,
  timeoutMs = 20_000,
): Promise<A> => Eventually.promise(what, check, { within: timeoutMs, every: 25 })

/** Running, not a zombie waiting to be reaped (`/proc/<pid>/stat` state `Z`). Linux only. */
export const isAlive = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3)
    return state !== "Z" && state !== "X"
  } catch {
    return false
  }
}

export interface StatusJson {
  readonly name: string
  readonly slots: number | undefined
  readonly instances: ReadonlyArray<{
    readonly instanceId: string
    readonly role: "supervisor" | "subordinate"
    readonly pid: number
    readonly state: "holding" | "waiting" | "idle"
    readonly command: string
  }>
}

/**
 * The registry of election `name`, read in this process as `status --json` reads it. Tests poll
 * it: a status CLI per poll was a Node start each (~0.4 s of CPU, 8 s and more of wall time at
 * load 48 on 2 cores), so under load a wait spent its bound starting status processes.
 * `status.test` runs the CLI itself.
 */
export const statusJson = async (name: string, secret: string): Promise<StatusJson> => {
  const address = `unix://${runtimeDir}/understudy-${programName}-${name}.sock`
  const invocation = parse(["status", "--name", name, "--secret", secret, "--address", address])
  if (invocation._tag !== "Status") throw new Error(`status: ${JSON.stringify(invocation)}`)
  return Effect.runPromise(readRegistry(invocation))
}

/**
 * Waits (bounded) for every CLI to exit; on time-out, says which are still running, what
 * they printed, and what the registry shows.
 */
export const awaitExits = async (
  clis: ReadonlyArray<Spawned>,
  name: string,
  secret: string,
  timeoutMs = 30_000,
) => {
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs)
  })
  const all = Promise.all(clis.map((cli) => cli.exited))
  const result = await Promise.race([all, timedOut])
  clearTimeout(timer)
  if (result !== "timeout") return result
  const running = clis.filter((cli) => cli.child.exitCode === null && cli.child.signalCode === null)
  const status = await statusJson(name, secret).catch((error: unknown) => String(error))
  throw new Error(
    `still running after ${timeoutMs} ms: ${running
      .map((cli) => `${cli.label} (pid ${cli.child.pid}) stderr=${JSON.stringify(cli.stderr)}`)
      .join("; ")}; status: ${JSON.stringify(status)}`,
  )
}

/**
 * The arguments of an instance that takes one of `slots` slots of semaphore `name` and
 * runs a `recorder` command labelled `label` for `sleepMs`.
 */
export const slotArgs =
  (
    workspace: { readonly name: string; readonly secret: string; readonly log: string },
    slots = 2,
  ) =>
  (label: string, sleepMs: number) => [
    "--name",
    workspace.name,
    "--slots",
    String(slots),
    "--secret",
    workspace.secret,
    "--",
    ...recorder(workspace.log, label, sleepMs),
  ]
