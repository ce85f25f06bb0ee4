/**
 * @understudy/checkpoint: a second server takes over a live connection from a first one
 * without the client's application noticing. Every layer appends its state to a
 * checkpoint; the takeover server compares the client's acknowledgement with it, recreates
 * the connection unready, signals ready and resumes at the exact byte.
 *
 * @since 0.1.0
 */
export * as BundleControl from "./BundleControl.ts"
export * as Checkpoint from "./Checkpoint.ts"
export * as CheckpointError from "./CheckpointError.ts"
export * as CheckpointStore from "./CheckpointStore.ts"
export * as Contributor from "./Contributor.ts"
export * as Discovery from "./Discovery.ts"
export * as DuplexSession from "./DuplexSession.ts"
export {
  type CheckpointClient,
  type CheckpointServer,
  type CreateClientOptions,
  type CreateServerOptions,
  createClient,
  createServer,
  type NameServerChoice,
  type StoreChoice,
} from "./Facade.ts"
export * as Machine from "./Machine.ts"
export * as Message from "./Message.ts"
export * as Metrics from "./Metrics.ts"
export * as ObjectBundle from "./ObjectBundle.ts"
export * as ObjectSession from "./ObjectSession.ts"
export * as Policy from "./Policy.ts"
export * as Proof from "./Proof.ts"
export * as Resume from "./Resume.ts"
export * as Sequence from "./Sequence.ts"
export * as TcpRepair from "./TcpRepair.ts"
