/**
 * Observability guide: two instances of a program elect a supervisor; it leaves; the
 * survivor takes over. Every Understudy package records its metrics with Effect's `Metric`,
 * so the program's own metrics, rendered as Prometheus text, show the failover's duration.
 */
import { randomBytes } from "node:crypto"
import { Election } from "@understudy/port-election"
import { Address, NodeTransport } from "@understudy/transport"
import { Effect, Exit, Fiber, Metric, Redacted, Scope, Stream } from "effect"
import { PrometheusMetrics } from "effect/observability"

export const program = Effect.gen(function* () {
  const address = Address.abstract(`understudy-docs-${randomBytes(4).toString("hex")}`)
  const secret = Redacted.make(new Uint8Array(randomBytes(32)))
  const join = (scope: Scope.Scope) =>
    Election.make({ program: "docs-metrics", address, secret }).pipe(
      Scope.provide(scope),
      Effect.provide(NodeTransport.layer),
    )
  const supervisorScope = yield* Scope.make()
  const survivorScope = yield* Scope.make()
  yield* join(supervisorScope)
  const survivor = yield* join(survivorScope)
  const elected = yield* Effect.forkChild(
    Stream.runHead(Stream.filter(survivor.events, (event) => event._tag === "Elected")),
  )
  yield* Effect.sleep(10)
  yield* Scope.close(supervisorScope, Exit.void)
  yield* Fiber.join(elected).pipe(Effect.timeout("5 seconds"))

  // What a Prometheus server would scrape (the apps serve it with --metrics HOST:PORT).
  const text = yield* PrometheusMetrics.format()
  yield* Scope.close(survivorScope, Exit.void)
  return text
    .split("\n")
    .filter((line) => line.startsWith("understudy_port_election_failover_ms_count"))
}).pipe(
  // A registry of its own, so that the figures are this program's alone; by default every
  // metric of the process is in one registry.
  Effect.provideService(Metric.MetricRegistry, new Map()),
)

if (import.meta.main) {
  Effect.runPromise(program).then((lines) => console.log(lines.join("\n")))
}
