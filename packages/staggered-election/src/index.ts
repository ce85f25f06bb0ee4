/**
 * @understudy/staggered-election: a fault-tolerant server group (seed 003) whose backups
 * detect a failed master by periodic inquiries and elect a new one after staggered election
 * delays computed from measured link delays and ranked capacities; the master replicates
 * client requests to every backup, and all of them apply the committed ones.
 *
 * @since 0.1.0
 */

export * as Client from "./Client.ts"
export * as Delays from "./Delays.ts"
export * as Durable from "./Durable.ts"
export * from "./Facade.ts"
export * as Leadership from "./Leadership.ts"
export * as Machine from "./Machine.ts"
export * as Message from "./Message.ts"
export * as Metrics from "./Metrics.ts"
export * as Rank from "./Rank.ts"
export * as Replication from "./Replication.ts"
export * as ServerGroup from "./ServerGroup.ts"
export * as Wal from "./Wal.ts"
