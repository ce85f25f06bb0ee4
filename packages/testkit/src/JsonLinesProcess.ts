/**
 * A program under test as an OS process that reports on stdout with one JSON object per
 * line (`{"t": "ready", ...}`), for real-process tests and benchmarks. Every process made
 * here is tracked, so `killAll` can stop whatever is left, however a test ended.
 *
 * @since 0.1.0
 */
import { type ChildProcess, spawn } from "node:child_process"
import { setTimeout as sleep } from "node:timers/promises"

const running = new Set<ChildProcess>()

/** @since 0.1.0 @category models */
export interface Options {
  /** Extra environment for the child. */
  readonly env?: Readonly<Record<string, string>>
  /** JSON lines kept; later ones are dropped (long runs that only need the first). Default 100,000. */
  readonly linesMax?: number
  /** Characters of stderr kept, the most recent, for error messages. Default 4,000. */
  readonly stderrMax?: number
}

/**
 * Runs `node <script> <args>` (the current Node binary) with piped stdio.
 *
 * @since 0.1.0
 * @category constructors
 */
export class JsonLinesProcess {
  readonly child: ChildProcess
  readonly lines: Array<Record<string, unknown>> = []
  stderr = ""
  exited = false
  private buffer = ""

  constructor(script: string, args: ReadonlyArray<string>, options: Options = {}) {
    const linesMax = options.linesMax ?? 100_000
    const stderrMax = options.stderrMax ?? 4_000
    this.child = spawn(process.execPath, [script, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, ...options.env },
    })
    running.add(this.child)
    this.child.stdin!.on("error", () => {})
    this.child.stdout!.setEncoding("utf8")
    this.child.stdout!.on("data", (chunk: string) => {
      this.buffer += chunk
      for (let nl = this.buffer.indexOf("\n"); nl >= 0; nl = this.buffer.indexOf("\n")) {
        const text = this.buffer.slice(0, nl)
        this.buffer = this.buffer.slice(nl + 1)
        if (this.lines.length >= linesMax || !text.startsWith("{")) continue
        try {
          this.lines.push(JSON.parse(text) as Record<string, unknown>)
        } catch {
          // Not a JSON line.
        }
      }
    })
    this.child.stderr!.on("data", (chunk) => {
      this.stderr = (this.stderr + chunk).slice(-stderrMax)
    })
    this.child.on("exit", () => {
      this.exited = true
      running.delete(this.child)
    })
  }

  /** The first line whose `t` is `tag`, waiting at most `timeoutMs`. */
  async line(tag: string, timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = performance.now() + timeoutMs
    while (performance.now() < deadline) {
      const found = this.lines.find((line) => line.t === tag)
      if (found !== undefined) return found
      if (this.exited) break
      await sleep(10)
    }
    throw new Error(`no ${tag} line within ${timeoutMs} ms; stderr: ${this.stderr}`)
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal)
  }

  /** Resolves once the process has exited. */
  exit(): Promise<void> {
    return new Promise((resolve) =>
      this.exited ? resolve() : this.child.once("exit", () => resolve()),
    )
  }
}

/**
 * SIGCONT (for stopped ones) then SIGKILL to every process made here that still runs.
 *
 * @since 0.1.0
 * @category cleanup
 */
export const killAll = (): void => {
  for (const child of running) {
    child.kill("SIGCONT")
    child.kill("SIGKILL")
  }
  running.clear()
}
