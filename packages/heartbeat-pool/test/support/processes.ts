/**
 * The tests that SIGKILL a server process: the three servers as OS processes (the bench's
 * `serverProcess.ts`), waiting until a killed process is gone, and until something is seen,
 * all bounded.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { JsonLinesProcess as Jl } from "@understudy/testkit"
import { Effect, Redacted, type Scope } from "effect"
import type * as Server from "../../src/Server.ts"
import type { Member, signedPool } from "./pool.ts"

/** Margins for a loaded machine: a lease of 20 heartbeats of 100 ms (a new leader settles for a lease). */
export const timing: Server.Timing = {
  heartbeatIntervalMs: 100,
  followerTimeoutMs: 1_000,
  checkTimeoutMs: 300,
  leaderLeaseMs: 700,
  downAfterMs: 800,
  electionStaggerMs: 200,
  leaseMs: 2_000,
}

/**
 * `members` as server processes of the pool `pool` with `timing`, their state under `dir`,
 * each ready; all killed when the scope closes.
 */
export const serverProcesses = (
  members: ReadonlyArray<Member>,
  pool: ReturnType<typeof signedPool>,
  dir: string,
): Effect.Effect<ReadonlyMap<string, Jl.JsonLinesProcess>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const servers = new Map(
      members.map((member) => [
        member.id,
        new Jl.JsonLinesProcess(
          join(import.meta.dirname, "../../bench/serverProcess.ts"),
          [
            JSON.stringify({
              self: member.id,
              members,
              vendorPublicKey: pool.vendor.publicPem,
              stateDir: join(dir, member.id),
              license: pool.license,
              timing,
            }),
          ],
          { env: { POOL_SECRET_HEX: Buffer.from(Redacted.value(pool.secret)).toString("hex") } },
        ),
      ]),
    )
    yield* Effect.addFinalizer(() => Effect.sync(() => Jl.killAll()))
    for (const server of servers.values()) yield* Effect.promise(() => server.line("ready", 60_000))
    return servers
  })

/**
 * Blocks this process (and so the clients in it) until process `pid` is a zombie or gone: its
 * sockets are closed then. Bounded: 30 s.
 */
export const holdUntilGone = (pid: number) => {
  const pause = new Int32Array(new SharedArrayBuffer(4))
  for (let waited = 0; waited < 30_000; waited += 5) {
    let state: string
    try {
      // `pid (comm) S ...`: the state follows the last parenthesis.
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
      state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3)
    } catch {
      return
    }
    if (state === "Z" || state === "X") return
    Atomics.wait(pause, 0, 0, 5)
  }
  throw new Error(`process ${pid} still running 30 s after SIGKILL`)
}

/** Polls `check` every 20 ms, at most `timeoutMs`. */
export const until = (what: string, check: () => boolean, timeoutMs: number) =>
  Effect.gen(function* () {
    for (let waited = 0; !check(); waited += 20) {
      if (waited > timeoutMs)
        return yield* Effect.die(new Error(`not within ${timeoutMs} ms: ${what}`))
      yield* Effect.sleep(20)
    }
  })
