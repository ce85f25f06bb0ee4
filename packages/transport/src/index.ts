/**
 * @understudy/transport: framed stream connections, datagrams and a deterministic network
 * simulator, the one layer of Understudy that touches sockets.
 *
 * @since 0.1.0
 */
export * as Address from "./Address.ts"
export * as CloseReason from "./CloseReason.ts"
export * as ClusterKey from "./ClusterKey.ts"
export * as Codec from "./Codec.ts"
export * as Connection from "./Connection.ts"
export * as Datagram from "./Datagram.ts"
export * as Heap from "./Heap.ts"
export * as Metrics from "./Metrics.ts"
export * as NodeDatagram from "./NodeDatagram.ts"
export * as NodeTransport from "./NodeTransport.ts"
export * as Observability from "./Observability.ts"
export * as Options from "./Options.ts"
export * as SimNet from "./SimNet.ts"
export * as Transport from "./Transport.ts"
export * as TransportError from "./TransportError.ts"
