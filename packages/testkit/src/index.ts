/**
 * @understudy/testkit (private): deterministic simulation of Understudy machines on
 * `SimNet`, with seeded fault schedules and invariants checked after every step.
 *
 * Replay a failing seed with `UNDERSTUDY_SEED=<n> npm test`; run another batch of seeds
 * with `UNDERSTUDY_SEEDS=<first seed> npm test`.
 *
 * `NetNs`, `Ports` and `Usrsctp` are the apps' runtime kit's (`@understudy/app-kit`),
 * re-exported here for tests.
 *
 * @since 0.1.0
 */
export { NetNs, Ports, Usrsctp } from "@understudy/app-kit"
export * as EtcdServer from "./EtcdServer.ts"
export * as Eventually from "./Eventually.ts"
export * as FastSim from "./FastSim.ts"
export * as FaultSchedule from "./FaultSchedule.ts"
export * as JsonLinesProcess from "./JsonLinesProcess.ts"
export * as Network from "./Network.ts"
export * as Otlp from "./Otlp.ts"
export * as Prng from "./Prng.ts"
export * as Prometheus from "./Prometheus.ts"
export * as Seeds from "./Seeds.ts"
export * as ServerGroupProcesses from "./ServerGroupProcesses.ts"
export * as Simulation from "./Simulation.ts"
export * as TestTracer from "./TestTracer.ts"
