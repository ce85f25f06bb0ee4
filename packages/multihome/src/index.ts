/**
 * @understudy/multihome: an SCTP endpoint over UDP (RFC 9260, RFC 6951) whose association
 * a cluster replicates, so that its nodes look to the peer like alternate addresses of one
 * endpoint.
 *
 * What a user needs: `Endpoint` (bind, connect, accept, send: the Effect API) or
 * `createEndpoint` (the same with Promises), `Cluster` (two nodes serving one endpoint) with
 * its `Replication` policies and `Fence`, `Metrics`, and the errors. `Association` and
 * `ClusterRole` are the pure machines the drivers run (their events and status are part of
 * the API); `Packet` decodes and encodes SCTP packets, for tools and interop tests. The
 * protocol's parts (chunks, CRC32c, cookies, reassembly, TSN tracking, RTO, congestion,
 * ASCONF, AUTH, the listener, UDP encapsulation) are internal.
 *
 * @since 0.1.0
 */
export * as Association from "./Association.ts"
export * as Cluster from "./Cluster.ts"
export * as ClusterRole from "./ClusterRole.ts"
export * as DecodeError from "./DecodeError.ts"
export * as Endpoint from "./Endpoint.ts"
export {
  type CreateEndpointOptions,
  createEndpoint,
  type SctpAssociation,
  type SctpEndpoint,
} from "./Facade.ts"
export * as Fence from "./Fence.ts"
export * as Metrics from "./Metrics.ts"
export * as Packet from "./Packet.ts"
export * as Replication from "./Replication.ts"
