/**
 * The OS processes of a scenario: spawned with this Node (`process.execPath`, which runs
 * TypeScript by type stripping), read line by line, and all killed at the end.
 *
 * @since 0.1.0
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { setTimeout as sleep } from "node:timers/promises"

/** Milliseconds on CLOCK_MONOTONIC: the same clock as the workers' reports. @since 0.1.0 */
export const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6

/** @since 0.1.0 @category models */
export interface Child {
  readonly label: string
  readonly process: ChildProcess
  readonly pid: number
  /** Resolves when the process has exited, however. */
  readonly exited: Promise<void>
  readonly stderr: () => string
}

/** Keeps the last part of a child's stderr, for error messages. */
const stderrKeptBytes = 4_000

/**
 * A group of child processes that are all SIGKILLed by `killAll`. Stdin is a pipe the
 * children watch: if this process dies, they exit too.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeGroup = () => {
  const children = new Set<Child>()

  const spawnScript = (
    label: string,
    script: string,
    args: ReadonlyArray<string>,
    onLine: (line: string) => void,
  ): Child => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ["pipe", "pipe", "pipe"] })
    let stderr = ""
    child.stderr!.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-stderrKeptBytes)
    })
    // The child may be gone before anything is written to its stdin: ignore EPIPE.
    child.stdin!.on("error", () => {})
    createInterface({ input: child.stdout! }).on("line", onLine)
    const entry: Child = {
      label,
      process: child,
      pid: child.pid ?? -1,
      exited: new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) resolve()
        else child.once("exit", () => resolve())
      }),
      stderr: () => stderr,
    }
    children.add(entry)
    void entry.exited.then(() => children.delete(entry))
    return entry
  }

  /** SIGKILLs every child still running and waits (bounded) until they are gone. */
  const killAll = async (timeoutMs = 5_000): Promise<void> => {
    const running = [...children]
    for (const child of running) child.process.kill("SIGKILL")
    await Promise.race([
      Promise.all(running.map((child) => child.exited)),
      new Promise((resolve) => setTimeout(resolve, timeoutMs).unref()),
    ])
  }

  return { spawnScript, killAll, running: () => [...children] }
}

/** @since 0.1.0 */
export type Group = ReturnType<typeof makeGroup>

/**
 * Polls `check` every few milliseconds until it gives a value, for at most `timeoutMs`;
 * then throws, naming what it waited for.
 *
 * @since 0.1.0
 */
export const waitFor = async <A>(
  what: string,
  check: () => A | undefined,
  timeoutMs: number,
): Promise<A> => {
  const deadline = monotonicMs() + timeoutMs
  for (;;) {
    const value = check()
    if (value !== undefined) return value
    if (monotonicMs() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`)
    await sleep(5)
  }
}
