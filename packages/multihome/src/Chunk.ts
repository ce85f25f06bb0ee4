/**
 * SCTP chunks, their parameters and error causes (RFC 9260 §3.2–3.3), as a tagged union
 * with a codec, and the rules for chunk and parameter types the receiver does not know
 * (the upper two bits of the type, §3.2 and §3.2.1).
 *
 * Decoded byte fields (`userData`, `cookie`, raw values) are views into the received
 * packet, never copies: decoding allocates less than the packet's size. Copy a field to
 * keep it after its buffer is reused.
 *
 * On encoding, numbers are taken modulo 2^32 (or 2^16 for 16-bit fields); reserved flag
 * bits are written as zero and ignored on receipt.
 *
 * @since 0.1.0
 */

export { decodeAsconfParameters, encodeAsconfParameter } from "./internal/chunk/asconf.ts"
export {
  type CookieReceivedWhileShuttingDown,
  decodeCauses,
  type ErrorCause,
  type InvalidMandatoryParameter,
  type InvalidStreamIdentifier,
  type MissingMandatoryParameter,
  type NoUserData,
  type OutOfResource,
  type ProtocolViolation,
  type RestartWithNewAddresses,
  type StaleCookie,
  type UnknownCause,
  type UnrecognizedChunkType,
  type UnrecognizedParameters,
  type UnresolvableAddress,
  type UserInitiatedAbort,
} from "./internal/chunk/causes.ts"
export {
  type Abort,
  type Asconf,
  type AsconfAck,
  type AsconfParameter,
  type Auth,
  type Chunk,
  type CookieAck,
  type CookieEcho,
  type Data,
  type ForwardTsn,
  type ForwardTsnStream,
  type GapAckBlock,
  type Heartbeat,
  type HeartbeatAck,
  type Init,
  type InitAck,
  maxChunkLength,
  type OperationError,
  type Sack,
  type Shutdown,
  type ShutdownAck,
  type ShutdownComplete,
  typeOf,
  type UnknownChunk,
} from "./internal/chunk/chunks.ts"
export { AsconfParameterType, CauseCode, ChunkType, ParameterType } from "./internal/chunk/codes.ts"
export { decodeChunk } from "./internal/chunk/decode.ts"
export { chunkLength, chunkSize, encodeChunk, writeChunk } from "./internal/chunk/encode.ts"
export { type Fault, isFault } from "./internal/chunk/fault.ts"
export {
  type ChunkList,
  type CookiePreservative,
  decodeParameters,
  encodeParameter,
  type ForwardTsnSupported,
  type HmacAlgo,
  type HostNameAddress,
  type Ipv4Address,
  type Ipv6Address,
  type Parameter,
  type Random,
  type StateCookie,
  type SupportedAddressTypes,
  type SupportedExtensions,
  type UnknownParameter,
  type UnrecognizedParameter,
} from "./internal/chunk/parameters.ts"
export {
  type ChunkProcessing,
  chunkTypeAction,
  type ParameterProcessing,
  parameterTypeAction,
  processUnknownChunks,
  processUnknownParameters,
  refuseHostNameAddress,
  type UnknownAction,
  unrecognizedChunkType,
  unrecognizedParameter,
  unrecognizedParameters,
} from "./internal/chunk/unknown.ts"
