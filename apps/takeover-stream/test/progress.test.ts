import { describe, expect, it } from "vitest"
import * as Progress from "../src/progress.ts"

const MiB = 1048576

/** A reporter on a fake clock, writing into `out`. */
const fake = (tty: boolean) => {
  let nowMs = 0
  const out: Array<string> = []
  const reporter = Progress.reporter({
    tty,
    write: (text) => void out.push(text),
    now: () => nowMs,
    label: "ts",
  })
  const advance = (ms: number) => {
    nowMs += ms
  }
  return { reporter, out, advance }
}

describe("get --progress", () => {
  it("draws a bar with percent, bytes of the size and rate", () => {
    expect(Progress.bar({ bytes: 90 * MiB, size: 200 * MiB, elapsedMs: 2_000 }, 20)).toBe(
      "[#########...........]  45.0%  90.0 MiB / 200.0 MiB  45.0 MiB/s",
    )
    expect(Progress.bar({ bytes: 0, size: 0, elapsedMs: 0 }, 4)).toBe(
      "[####] 100.0%  0.0 MiB / 0.0 MiB  0.0 MiB/s",
    )
    // Before the size is told: bytes and rate only.
    expect(Progress.bar({ bytes: 3 * MiB, size: undefined, elapsedMs: 1_000 })).toBe(
      "3.0 MiB  3.0 MiB/s",
    )
  })

  it("on a terminal, redraws one line in place at most every 100 ms, and ends it", () => {
    const { reporter, out, advance } = fake(true)
    reporter.sized(100 * MiB)
    for (let i = 1; i <= 100; i++) {
      advance(10)
      reporter.progress(i * MiB)
    }
    reporter.done()
    // 1,000 ms of chunks every 10 ms: a redraw per 100 ms, then the last state and a newline.
    expect(out.length).toBe(10 + 2)
    expect(out.slice(0, -1).every((text) => text.startsWith("\rts: ["))).toBe(true)
    expect(out.at(-2)).toBe(`\rts: [${"#".repeat(30)}] 100.0%  100.0 MiB / 100.0 MiB  100.0 MiB/s`)
    expect(out.at(-1)).toBe("\n")
  })

  it("elsewhere, writes one plain line per 10% step, each step once", () => {
    const { reporter, out, advance } = fake(false)
    reporter.sized(50 * MiB)
    // Uneven chunks, some steps crossed twice in one chunk.
    for (const total of [1, 2, 7, 8, 20, 21, 44, 50]) {
      advance(100)
      reporter.progress(total * MiB)
    }
    reporter.done()
    expect(out).toEqual([
      "ts: 2% 1.0 MiB of 50.0 MiB, 10.0 MiB/s\n",
      "ts: 14% 7.0 MiB of 50.0 MiB, 23.3 MiB/s\n",
      "ts: 40% 20.0 MiB of 50.0 MiB, 40.0 MiB/s\n",
      "ts: 88% 44.0 MiB of 50.0 MiB, 62.9 MiB/s\n",
      "ts: 100% 50.0 MiB of 50.0 MiB, 62.5 MiB/s\n",
    ])
  })
})
