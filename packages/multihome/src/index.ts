/**
 * @understudy/multihome: an SCTP endpoint over UDP (RFC 9260, RFC 6951) whose association
 * a cluster replicates, so that its nodes look to the peer like alternate addresses of one
 * endpoint.
 *
 * @since 0.1.0
 */
export * as Asconf from "./Asconf.ts"
export * as Association from "./Association.ts"
export * as Auth from "./Auth.ts"
export * as Chunk from "./Chunk.ts"
export * as Cluster from "./Cluster.ts"
export * as ClusterRole from "./ClusterRole.ts"
export * as Congestion from "./Congestion.ts"
export * as Cookie from "./Cookie.ts"
export * as Crc32c from "./Crc32c.ts"
export * as DecodeError from "./DecodeError.ts"
export * as Encapsulation from "./Encapsulation.ts"
export * as Endpoint from "./Endpoint.ts"
export * as Facade from "./Facade.ts"
export * as Fence from "./Fence.ts"
export * as Listener from "./Listener.ts"
export * as Metrics from "./Metrics.ts"
export * as Packet from "./Packet.ts"
export * as Reassembly from "./Reassembly.ts"
export * as Replication from "./Replication.ts"
export * as Rto from "./Rto.ts"
export * as Serial from "./Serial.ts"
export * as TsnTracker from "./TsnTracker.ts"
