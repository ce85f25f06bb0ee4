/**
 * @understudy/machine: protocols as pure state machines, the runner that drives one over
 * datagrams and the clock, and a heartbeat failure detector built on them.
 *
 * @since 0.1.0
 */
export * as Authentication from "./Authentication.ts"
export * as FailureDetector from "./FailureDetector.ts"
export * as Machine from "./Machine.ts"
export * as Runner from "./Runner.ts"
export * as Spans from "./Spans.ts"
export * as TimerTable from "./TimerTable.ts"
