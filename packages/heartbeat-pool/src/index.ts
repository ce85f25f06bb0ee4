/**
 * @understudy/heartbeat-pool: a pool of servers with a leader and followers hands out leased
 * allocations (license seats) that survive the death of any one server.
 *
 * @since 0.1.0
 */
export * as Admin from "./Admin.ts"
export * as Client from "./Client.ts"
export * as ClientGroup from "./ClientGroup.ts"
export * as ClientMachine from "./ClientMachine.ts"
export * as Config from "./Config.ts"
export * from "./Facade.ts"
export * as Machine from "./Machine.ts"
export * as Message from "./Message.ts"
export * as Metrics from "./Metrics.ts"
export * as Resource from "./Resource.ts"
export * as Server from "./Server.ts"
export * as Signing from "./Signing.ts"
