/**
 * The showcase's live progress. On a terminal, one status line at the bottom redraws in
 * place (spinner, scenario, elapsed time, its latest step) while the steps scroll above it;
 * piped, every step is one plain line with a timestamp, so a log file reads top to bottom.
 *
 * @since 0.1.0
 */

/** Where progress goes: `process.stdout`, or a test's stand-in. @since 0.1.0 @category models */
export interface Output {
  readonly write: (text: string) => unknown
  readonly isTTY?: boolean | undefined
  readonly columns?: number | undefined
}

/** @since 0.1.0 @category models */
export interface Progress {
  /** A scenario starts: its number, of how many, its name and one sentence about it. */
  readonly begin: (index: number, total: number, name: string, description: string) => void
  /** One step of the running scenario. */
  readonly log: (line: string) => void
  /** The running scenario ended: how many checks, how many failed. */
  readonly end: (checks: number, failed: number) => void
  /** Writes text that is not progress (the table), below everything else. */
  readonly print: (text: string) => void
  /** Stops redrawing. */
  readonly close: () => void
}

const spinner = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"]
/** Clears the cursor's line and returns to its start. */
const clearLine = "\r\x1b[2K"
const redrawEveryMs = 100

/**
 * Progress on `output`: redrawn in place when it is a terminal, line by line otherwise.
 * `nowMs` is the clock the timestamps are read from.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (output: Output, nowMs: () => number = () => performance.now()): Progress => {
  const startedAtMs = nowMs()
  const seconds = (fromMs: number) => ((nowMs() - fromMs) / 1000).toFixed(1)
  let current:
    | { index: number; total: number; name: string; startedAtMs: number; latest: string }
    | undefined
  let frame = 0

  if (output.isTTY !== true) {
    return {
      begin: (index, total, name, description) => {
        current = { index, total, name, startedAtMs: nowMs(), latest: "" }
        output.write(`\n== [${index}/${total}] ${name}: ${description}\n`)
      },
      log: (line) => {
        const at = seconds(startedAtMs).padStart(6)
        output.write(`[${at} s] [${current?.name ?? "showcase"}] ${line}\n`)
      },
      end: (checks, failed) => {
        if (current === undefined) return
        const verdict = failed === 0 ? `${checks} checks ok` : `${failed} of ${checks} FAILED`
        output.write(`== ${current.name}: ${verdict} in ${seconds(current.startedAtMs)} s\n`)
        current = undefined
      },
      print: (text) => output.write(text),
      close: () => {},
    }
  }

  const fit = (text: string) => {
    const width = Math.max(20, (output.columns ?? 80) - 1)
    return text.length <= width ? text : `${text.slice(0, width - 1)}…`
  }
  const status = () => {
    if (current === undefined) return ""
    const head = `${spinner[frame % spinner.length]} [${current.index}/${current.total}] ${current.name} ${seconds(current.startedAtMs)} s`
    return fit(current.latest === "" ? head : `${head} · ${current.latest.trim()}`)
  }
  const redraw = () => output.write(`${clearLine}${status()}`)
  const timer = setInterval(() => {
    frame++
    redraw()
  }, redrawEveryMs)
  timer.unref()
  /** Writes `text` above the status line, then puts the status line back. */
  const above = (text: string) => output.write(`${clearLine}${text}${status()}`)

  return {
    begin: (index, total, name, description) => {
      current = { index, total, name, startedAtMs: nowMs(), latest: "" }
      above(`${fit(`  ${name}: ${description}`)}\n`)
    },
    log: (line) => {
      if (current === undefined) return above(`${line}\n`)
      current.latest = line
      above(`    ${line}\n`)
    },
    end: (checks, failed) => {
      if (current === undefined) return
      const mark = failed === 0 ? "✓" : "✗"
      const verdict = failed === 0 ? `${checks} checks ok` : `${failed} of ${checks} FAILED`
      const done = `${mark} [${current.index}/${current.total}] ${current.name} ${seconds(current.startedAtMs)} s · ${verdict}`
      current = undefined
      output.write(`${clearLine}${done}\n`)
    },
    print: (text) => above(text),
    close: () => {
      clearInterval(timer)
      output.write(clearLine)
    },
  }
}
