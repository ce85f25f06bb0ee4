/**
 * `get --progress`: how far a download is. The server tells the object's size when the
 * transfer opens, so on a terminal it is a bar redrawn in place (percent, bytes, rate);
 * elsewhere (a pipe, a log) one plain line per step of `stepPercent`. Before the size is
 * known (or from a server that does not tell it) only bytes and rate are shown.
 *
 * @since 0.1.0
 */

const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`

/** What a progress report says at one moment. @since 0.1.0 */
export interface Snapshot {
  readonly bytes: number
  /** The object's size, once told. */
  readonly size: number | undefined
  /** Since the download started. */
  readonly elapsedMs: number
}

const rateOf = (snapshot: Snapshot) =>
  `${mib(snapshot.elapsedMs > 0 ? (snapshot.bytes * 1000) / snapshot.elapsedMs : 0)}/s`

const percentOf = (bytes: number, size: number) =>
  size === 0 ? 100 : Math.min(100, (bytes * 100) / size)

/**
 * The bar: `[#########...........]  45.2%  90.4 MiB / 200.0 MiB  85.3 MiB/s`.
 *
 * @since 0.1.0
 */
export const bar = (snapshot: Snapshot, width = 30): string => {
  if (snapshot.size === undefined) return `${mib(snapshot.bytes)}  ${rateOf(snapshot)}`
  const percent = percentOf(snapshot.bytes, snapshot.size)
  const filled = Math.floor((percent / 100) * width)
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${percent.toFixed(1).padStart(5)}%  ${mib(snapshot.bytes)} / ${mib(snapshot.size)}  ${rateOf(snapshot)}`
}

/**
 * One plain line: `40% 80.0 MiB of 200.0 MiB, 85.3 MiB/s`.
 *
 * @since 0.1.0
 */
export const plainLine = (snapshot: Snapshot): string =>
  snapshot.size === undefined
    ? `${mib(snapshot.bytes)}, ${rateOf(snapshot)}`
    : `${Math.floor(percentOf(snapshot.bytes, snapshot.size))}% ${mib(snapshot.bytes)} of ${mib(snapshot.size)}, ${rateOf(snapshot)}`

/** @since 0.1.0 */
export interface ReporterOptions {
  /** A terminal: redraw one bar in place; otherwise a line per step. */
  readonly tty: boolean
  readonly write: (text: string) => void
  /** Milliseconds, monotonic. */
  readonly now: () => number
  /** Prefix of every line (the program's name). */
  readonly label: string
  /** Non-terminal: a line every this many percent (of an unknown size: every 16 MiB). Default 10. */
  readonly stepPercent?: number
  /** Terminal: redraw at most this often. Default 100 ms. */
  readonly redrawMs?: number
}

/** @since 0.1.0 */
export interface Reporter {
  /** The server told the object's size. */
  readonly sized: (size: number) => void
  /** `bytes` arrived in all so far. */
  readonly progress: (bytes: number) => void
  /** The download ended: the last state, and the terminal's line ended. */
  readonly done: () => void
}

/** @since 0.1.0 */
export const reporter = (options: ReporterOptions): Reporter => {
  const startMs = options.now()
  const stepPercent = options.stepPercent ?? 10
  const redrawMs = options.redrawMs ?? 100
  const unsizedStep = 16 * 1048576
  let size: number | undefined
  let bytes = 0
  let drawnAtMs = Number.NEGATIVE_INFINITY
  // Non-terminal: the last step a line was written for.
  let step = -1
  const snapshot = (): Snapshot => ({ bytes, size, elapsedMs: options.now() - startMs })
  const draw = () => options.write(`\r${options.label}: ${bar(snapshot())}`)
  const stepOf = () =>
    size === undefined
      ? Math.floor(bytes / unsizedStep)
      : Math.floor(percentOf(bytes, size) / stepPercent)
  return {
    sized: (told) => {
      size = told
      // Steps count in percent from now on.
      step = -1
    },
    progress: (total) => {
      bytes = total
      if (options.tty) {
        const nowMs = options.now()
        if (nowMs - drawnAtMs < redrawMs) return
        drawnAtMs = nowMs
        draw()
        return
      }
      const reached = stepOf()
      if (reached <= step) return
      step = reached
      options.write(`${options.label}: ${plainLine(snapshot())}\n`)
    },
    done: () => {
      if (options.tty) {
        draw()
        options.write("\n")
      } else if (stepOf() > step) options.write(`${options.label}: ${plainLine(snapshot())}\n`)
    },
  }
}
