/**
 * Chunk and parameter types the receiver does not know: the action their upper two bits
 * ask for (RFC 9260 §3.2, §3.2.1), and the error causes that report them.
 */

import { listLength } from "../wire.ts"
import type {
  UnrecognizedChunkType,
  UnrecognizedParameters,
  UnresolvableAddress,
} from "./causes.ts"
import type { Chunk, UnknownChunk } from "./chunks.ts"
import { encodeChunk } from "./encode.ts"
import {
  encodeParameter,
  type Parameter,
  parameterSize,
  parameterValueLength,
  type UnknownParameter,
  type UnrecognizedParameter,
  writeParameter,
} from "./parameters.ts"

/**
 * What a receiver does with a chunk or parameter type it does not recognize, from the
 * upper two bits of the type (RFC 9260 §3.2 for chunks, §3.2.1 for parameters):
 * 00 stop and discard, 01 stop, discard and report, 10 skip, 11 skip and report. For a
 * chunk "stop" means the rest of the packet; for a parameter, the rest of the chunk's
 * parameters.
 *
 * @since 0.1.0
 * @category unknown types
 */
export type UnknownAction = "Stop" | "StopAndReport" | "Skip" | "SkipAndReport"

const actions: ReadonlyArray<UnknownAction> = ["Stop", "StopAndReport", "Skip", "SkipAndReport"]

/**
 * The action for an unrecognized 8-bit chunk type.
 *
 * @since 0.1.0
 * @category unknown types
 */
export const chunkTypeAction = (type: number): UnknownAction => actions[(type >>> 6) & 3]!

/**
 * The action for an unrecognized 16-bit parameter type.
 *
 * @since 0.1.0
 * @category unknown types
 */
export const parameterTypeAction = (type: number): UnknownAction => actions[(type >>> 14) & 3]!

/**
 * The outcome of applying the upper-two-bit rule to a list of parameters.
 *
 * @since 0.1.0
 * @category unknown types
 */
export interface ParameterProcessing {
  /** An unknown parameter said stop: parameters after it are not processed. */
  readonly stop: boolean
  /** The recognized parameters to process, in order (those before a stop). */
  readonly process: ReadonlyArray<Parameter>
  /**
   * Unknown parameters to report: in an INIT ACK as Unrecognized Parameter parameters when
   * processing INIT, otherwise in an ERROR chunk's Unrecognized Parameters cause.
   */
  readonly report: ReadonlyArray<UnknownParameter>
}

/**
 * Applies RFC 9260 §3.2.1 to the parameters of an INIT or INIT ACK.
 *
 * @since 0.1.0
 * @category unknown types
 * @example
 * ```ts
 * const { stop, report } = Chunk.processUnknownParameters(init.parameters)
 * ```
 */
export const processUnknownParameters = (
  parameters: ReadonlyArray<Parameter>,
): ParameterProcessing => {
  const process: Array<Parameter> = []
  const report: Array<UnknownParameter> = []
  for (const parameter of parameters) {
    if (parameter._tag !== "UnknownParameter") {
      process.push(parameter)
      continue
    }
    const action = parameterTypeAction(parameter.type)
    if (action === "StopAndReport" || action === "SkipAndReport") report.push(parameter)
    if (action === "Stop" || action === "StopAndReport") return { stop: true, process, report }
  }
  return { stop: false, process, report }
}

/**
 * The outcome of applying the upper-two-bit rule to a packet's chunks.
 *
 * @since 0.1.0
 * @category unknown types
 */
export interface ChunkProcessing {
  /** An unknown chunk said stop: it and every chunk after it are discarded. */
  readonly stop: boolean
  /** The recognized chunks to process, in order (those before a stop). */
  readonly process: ReadonlyArray<Chunk>
  /** Unknown chunks to report, each in an Unrecognized Chunk Type cause of an ERROR chunk. */
  readonly report: ReadonlyArray<UnknownChunk>
}

/**
 * Applies RFC 9260 §3.2 to the chunks of a received packet.
 *
 * @since 0.1.0
 * @category unknown types
 */
export const processUnknownChunks = (chunks: ReadonlyArray<Chunk>): ChunkProcessing => {
  const process: Array<Chunk> = []
  const report: Array<UnknownChunk> = []
  for (const chunk of chunks) {
    if (chunk._tag !== "UnknownChunk") {
      process.push(chunk)
      continue
    }
    const action = chunkTypeAction(chunk.type)
    if (action === "StopAndReport" || action === "SkipAndReport") report.push(chunk)
    if (action === "Stop" || action === "StopAndReport") return { stop: true, process, report }
  }
  return { stop: false, process, report }
}

/**
 * The error cause reporting an unrecognized chunk (the chunk as it was received, modulo
 * padding).
 *
 * @since 0.1.0
 * @category unknown types
 */
export const unrecognizedChunkType = (chunk: UnknownChunk): UnrecognizedChunkType => ({
  _tag: "UnrecognizedChunkType",
  chunk: encodeChunk(chunk).subarray(0, 4 + chunk.value.length),
})

/**
 * The INIT ACK parameter reporting one unrecognized INIT parameter.
 *
 * @since 0.1.0
 * @category unknown types
 */
export const unrecognizedParameter = (parameter: UnknownParameter): UnrecognizedParameter => ({
  _tag: "UnrecognizedParameter",
  parameter: encodeParameter(parameter).subarray(0, 4 + parameter.value.length),
})

/**
 * The ERROR cause reporting unrecognized parameters (outside INIT processing).
 *
 * @since 0.1.0
 * @category unknown types
 */
export const unrecognizedParameters = (
  parameters: ReadonlyArray<UnknownParameter>,
): UnrecognizedParameters => {
  const bytes = new Uint8Array(parameters.reduce((sum, p) => sum + parameterSize(p), 0))
  let offset = 0
  for (const parameter of parameters) offset = writeParameter(bytes, offset, parameter)
  // The last parameter's padding is the cause's own, outside its length.
  const length = listLength(parameters, (p) => 4 + parameterValueLength(p))
  return { _tag: "UnrecognizedParameters", parameters: bytes.subarray(0, length) }
}

/**
 * RFC 9260 §5.1.2: an INIT or INIT ACK with a Host Name Address is refused with an ABORT.
 * Returns the Unresolvable Address cause to put in that ABORT, or `undefined` if there is
 * no host name among the parameters.
 *
 * @since 0.1.0
 * @category validation
 */
export const refuseHostNameAddress = (
  parameters: ReadonlyArray<Parameter>,
): UnresolvableAddress | undefined => {
  const hostName = parameters.find((p) => p._tag === "HostNameAddress")
  return hostName === undefined
    ? undefined
    : {
        _tag: "UnresolvableAddress",
        address: encodeParameter(hostName).subarray(0, 4 + hostName.hostName.length),
      }
}
