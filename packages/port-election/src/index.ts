/**
 * @understudy/port-election: copies of one program on one machine elect a supervisor by
 * binding a well-known address, and coordinate through it.
 *
 * @since 0.1.0
 */
export * as Election from "./Election.ts"
export * as ElectionError from "./ElectionError.ts"
export { createInstance, type Instance, type InstanceOptions } from "./Facade.ts"
export * as Grants from "./Grants.ts"
export * as Identity from "./Identity.ts"
export * as Metrics from "./Metrics.ts"
export * as Operation from "./Operation.ts"
export * as Secret from "./Secret.ts"
export * as SocketDirectory from "./SocketDirectory.ts"
