/**
 * Who this instance is to the operating system: its process id and a source of unique
 * names. The election reads them only through this reference, never `process.pid` or
 * `randomUUID()` directly, so a simulation can give every instance of one test process an
 * identity of its own and replay it from a seed.
 *
 * The default is the real process: `process.pid`, `crypto.randomUUID()`, `kill(pid, 0)` and
 * `/proc/self/ns/pid`.
 * Instance ids must be unique across processes and restarts, so in production they come
 * from the OS's randomness rather than the (possibly seeded) Effect `Random`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Election, Identity } from "@understudy/port-election"
 *
 * // In a simulation: instance 3 of the test, with names from a counter.
 * let counter = 0
 * const program = Election.make(options).pipe(
 *   Effect.provideService(Identity.Identity, Identity.of({ pid: 1003, uniqueId: () => `i3-${++counter}` })),
 * )
 * ```
 * @since 0.1.0
 */
import { randomUUID } from "node:crypto"
import { readlinkSync } from "node:fs"
import { Context } from "effect"

/** @since 0.1.0 @category models */
export interface Shape {
  /** The process id registered with the supervisor (with the start time, it tells a copy). */
  readonly pid: number
  /** A new name, unique across processes and restarts: instance ids, standby addresses. */
  readonly uniqueId: () => string
  /**
   * False only when no process `pid` exists on this machine (a member that died holding
   * permits: they need not wait out their reservation). Absent: every member counts as
   * running, and its permits wait out the reservation.
   */
  readonly isRunning?: (pid: number) => boolean
  /**
   * The pid namespace `pid` lives in (`/proc/self/ns/pid`'s link, `pid:[INODE]`). A
   * supervisor asks `isRunning` only about members that registered the same one: in another
   * namespace (a container sharing the network namespace) the same number is another
   * process. Absent: it never asks.
   */
  readonly pidNamespace?: string
}

/** `kill(pid, 0)`: only ESRCH says there is no such process (EPERM: someone else's). */
const isRunning = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ESRCH"
  }
}

/** This process's pid namespace, or undefined where there is no `/proc` to say. */
const pidNamespace = (): string | undefined => {
  try {
    return readlinkSync("/proc/self/ns/pid")
  } catch {
    return undefined
  }
}

/**
 * This instance's identity; `process.pid` and `randomUUID()` unless provided.
 *
 * @since 0.1.0
 * @category references
 */
export const Identity = Context.Reference<Shape>("@understudy/port-election/Identity", {
  defaultValue: () => {
    const namespace = pidNamespace()
    return {
      pid: process.pid,
      uniqueId: randomUUID,
      isRunning,
      ...(namespace === undefined ? {} : { pidNamespace: namespace }),
    }
  },
})

/**
 * An identity of one's own, for simulations and tests.
 *
 * @since 0.1.0
 * @category constructors
 */
export const of = (identity: Shape): Shape => identity
