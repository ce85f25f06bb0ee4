import type { TestProjectInlineConfiguration } from "vitest/config"

/** A group of a suite's test files: its name in vitest's report and its globs. */
export interface Files {
  readonly name: string
  readonly include: ReadonlyArray<string>
  readonly exclude?: ReadonlyArray<string>
}

const project = (
  files: Files,
  groupOrder: number,
  alone: boolean,
): TestProjectInlineConfiguration => ({
  extends: true,
  test: {
    name: files.name,
    include: [...files.include],
    ...(files.exclude === undefined ? {} : { exclude: [...files.exclude] }),
    ...(alone ? { fileParallelism: false } : {}),
    sequence: { groupOrder },
  },
})

/**
 * A suite in two phases, for the `test` block of a `vitest.config.ts`.
 *
 * vitest's default in `run` mode is one worker less than the cores: 1 on the 2-core machines the
 * suites run on, so a suite's wall time would be the sum of its files. With two workers, the
 * files on simulated time, or short in-process ones (`together`), run two at a time first;
 * then the files on real processes, real sockets and real time (`alone`) run one at a time, so
 * a timed failover never shares the cores with a CPU-bound simulation, nor with another one.
 */
export const twoPhases = (together: Files, alone: Files) => ({
  maxWorkers: 2,
  projects: [project(together, 0, false), project(alone, 1, true)],
})
