/**
 * One instance of the port-election scenario, run as its own OS process: it joins the
 * election, takes a permit of a semaphore in turns (acquire, hold, release, repeat), and
 * reports on stdout, one JSON object a line, what happened and when by its own clock.
 *
 * Times are `process.hrtime` milliseconds: CLOCK_MONOTONIC on Linux, one clock for every
 * process of the machine, so the showcase can compare them across workers.
 *
 * Usage (by the scenario): `node electionWorker.ts '<WorkerConfig JSON>'`.
 *
 * @since 0.1.0
 */
import { Election } from "@understudy/port-election"
import { Address, NodeTransport } from "@understudy/transport"
import { Effect, Stream } from "effect"

/** @since 0.1.0 @category models */
export interface WorkerConfig {
  readonly label: string
  readonly program: string
  readonly address: string
  readonly secretPath: string
  readonly resource: string
  readonly limit: number
  readonly holdMs: number
  /** Pause between releasing and asking again, so the others get a turn. */
  readonly pauseMs: number
  /** The worker exits by itself after this long, whatever happens to its parent. */
  readonly lifetimeMs: number
}

/** What a worker prints, one per line. @since 0.1.0 @category models */
export type WorkerReport =
  | {
      readonly type: "ready"
      readonly instanceId: string
      readonly pid: number
      readonly role: "supervisor" | "subordinate"
      readonly supervisorId: string
      readonly atMs: number
    }
  | {
      readonly type: "event"
      readonly tag: "Elected" | "BecameSubordinate" | "SupervisorLost" | "PermitLost" | "Failed"
      readonly supervisorId: string | undefined
      readonly atMs: number
    }
  | { readonly type: "holdStart"; readonly turn: number; readonly atMs: number }
  | {
      readonly type: "holdEnd"
      readonly turn: number
      readonly atMs: number
      readonly lost: boolean
    }
  | { readonly type: "error"; readonly message: string }

const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6

const report = (line: WorkerReport): void => {
  // Writes to a pipe are synchronous on Linux: a line printed is a line delivered, even if
  // the worker is SIGKILLed right after.
  process.stdout.write(`${JSON.stringify(line)}\n`)
}

/** Turns per worker: a bound on the loop; the scenario ends long before. */
const turnsMax = 100_000

const main = (config: WorkerConfig) =>
  Effect.gen(function* () {
    const address = Address.parseStream(config.address)
    if (address instanceof Address.InvalidAddress) return yield* Effect.die(address)
    const election = yield* Election.make({
      program: config.program,
      address,
      secret: { path: config.secretPath },
      metadata: { label: config.label },
    })
    yield* Effect.forkScoped(
      Stream.runForEach(election.events, (event) =>
        Effect.sync(() => {
          switch (event._tag) {
            case "Elected":
              return report({
                type: "event",
                tag: event._tag,
                supervisorId: event.instanceId,
                atMs: monotonicMs(),
              })
            case "BecameSubordinate":
            case "SupervisorLost":
              return report({
                type: "event",
                tag: event._tag,
                supervisorId: event.supervisorId,
                atMs: monotonicMs(),
              })
            case "PermitLost":
            case "Failed":
              return report({
                type: "event",
                tag: event._tag,
                supervisorId: undefined,
                atMs: monotonicMs(),
              })
            default:
              return
          }
        }),
      ),
    )
    // Let the event subscription start before reporting the first role, so no change of
    // role falls between the two.
    yield* Effect.yieldNow
    const role = yield* election.role
    report({
      type: "ready",
      instanceId: election.instanceId,
      pid: process.pid,
      role: role._tag === "Supervisor" ? "supervisor" : "subordinate",
      supervisorId:
        role._tag === "Subordinate"
          ? role.supervisorId
          : role._tag === "Supervisor"
            ? election.instanceId
            : "",
      atMs: monotonicMs(),
    })
    for (let turn = 0; turn < turnsMax; turn++) {
      yield* Effect.scoped(
        Effect.gen(function* () {
          const permit = yield* election.acquire(config.resource, { limit: config.limit })
          report({ type: "holdStart", turn, atMs: monotonicMs() })
          const lost = yield* Effect.raceFirst(
            Effect.as(Effect.sleep(config.holdMs), false),
            Effect.as(permit.lost, true),
          )
          // Reported before the scope closes, that is before the permit is released.
          report({ type: "holdEnd", turn, atMs: monotonicMs(), lost })
        }),
      )
      yield* Effect.sleep(config.pauseMs)
    }
  }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer))

const config = JSON.parse(process.argv[2] ?? "{}") as WorkerConfig
// The showcase holds our stdin: when it goes away, so do we.
process.stdin.on("end", () => process.exit(0))
process.stdin.on("error", () => process.exit(0))
process.stdin.resume()
setTimeout(() => process.exit(0), config.lifetimeMs).unref()

Effect.runPromise(main(config)).then(
  () => process.exit(0),
  (error: unknown) => {
    report({ type: "error", message: error instanceof Error ? error.message : String(error) })
    process.exit(3)
  },
)
