/**
 * @understudy/multihome: an SCTP endpoint over UDP (RFC 9260, RFC 6951) whose association
 * a cluster replicates, so that its nodes look to the peer like alternate addresses of one
 * endpoint. This first layer is the wire codec.
 *
 * @since 0.1.0
 */
export * as Chunk from "./Chunk.ts"
export * as Crc32c from "./Crc32c.ts"
export * as DecodeError from "./DecodeError.ts"
export * as Encapsulation from "./Encapsulation.ts"
export * as Packet from "./Packet.ts"
