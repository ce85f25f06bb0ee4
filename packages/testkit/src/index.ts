/**
 * @understudy/testkit (private): deterministic simulation of Understudy machines on
 * `SimNet`, with seeded fault schedules and invariants checked after every step.
 *
 * Replay a failing seed with `UNDERSTUDY_SEED=<n> npm test`; run another batch of seeds
 * with `UNDERSTUDY_SEEDS=<first seed> npm test`.
 *
 * @since 0.1.0
 */
export * as EtcdServer from "./EtcdServer.ts"
export * as FastSim from "./FastSim.ts"
export * as FaultSchedule from "./FaultSchedule.ts"
export * as JsonLinesProcess from "./JsonLinesProcess.ts"
export * as NetNs from "./NetNs.ts"
export * as Network from "./Network.ts"
export * as Otlp from "./Otlp.ts"
export * as Ports from "./Ports.ts"
export * as Prng from "./Prng.ts"
export * as Prometheus from "./Prometheus.ts"
export * as Seeds from "./Seeds.ts"
export * as Simulation from "./Simulation.ts"
export * as TestTracer from "./TestTracer.ts"
export * as Usrsctp from "./Usrsctp.ts"
