/**
 * Binary forms of the link's two per-update messages: an `Inputs` whose inputs are all
 * received datagrams (what every every-update step of a peer's packets ships) and the
 * secondary's `Ack`. The general encoding (`plain.ts`) costs a JSON stringify on one node
 * and a JSON parse on the other for each; these are a few field copies. Any other message,
 * or any field these layouts can not carry exactly, goes the plain way.
 *
 * A plain encoding starts with its JSON text's u32 length (big-endian), never 0xFE000000 or
 * more, so a first byte of 0xFE or 0xFF marks these. Layouts, big-endian:
 * - `Inputs`: 0xFF, version 1, f64 seq, f64 epoch, f64 association, u32 input count, then
 *   per input: f64 nowMs, u16 udpPort, u8 host length, the host (UTF-8), u32 datagram
 *   length, the datagram;
 * - `Ack`: 0xFE, f64 seq.
 * Decoding gives the very object the plain encoding would, which the codec then checks like
 * any other message.
 */
import { PlainDecodeError } from "./plain.ts"

const inputsMarker = 0xff
const ackMarker = 0xfe
const ackLength = 9
const version = 1

/** Whether `bytes` are one of these forms (else a plain encoding). */
export const isBinary = (bytes: Uint8Array): boolean => (bytes[0] ?? 0) >= ackMarker
/** Marker, version, seq, epoch, association, count. */
const headerLength = 2 + 8 * 3 + 4
/** nowMs, udpPort, host length, datagram length: an input with an empty host and datagram. */
const inputMinLength = 8 + 2 + 1 + 4

interface Receive {
  readonly _tag: "Receive"
  readonly host: string
  readonly udpPort: number
  readonly bytes: Uint8Array
  readonly nowMs: number
}

interface Ack {
  readonly _tag: "Ack"
  readonly seq: number
}

interface InputsOfReceives {
  readonly _tag: "Inputs"
  readonly seq: number
  readonly epoch: number
  readonly association: number
  readonly inputs: ReadonlyArray<Receive>
}

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

/** Whether every UTF-16 unit of `text` is ASCII (an IP literal's are): then one byte each. */
const isAscii = (text: string): boolean => {
  for (let index = 0; index < text.length; index++) {
    if (text.charCodeAt(index) > 0x7f) return false
  }
  return true
}

const isPort = (value: unknown): value is number =>
  typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 0xffff

/**
 * The message in one of these forms, or undefined when it is neither an `Ack` nor an
 * `Inputs` of received datagrams that a layout carries exactly (then it goes plain).
 */
export const encode = (message: { readonly _tag: string }): Uint8Array | undefined => {
  if (message._tag === "Ack") return encodeAck(message as Ack)
  if (message._tag !== "Inputs") return undefined
  const { seq, epoch, association, inputs } = message as InputsOfReceives
  if (!Number.isFinite(seq) || !Number.isFinite(epoch) || !Number.isFinite(association)) {
    return undefined
  }
  if (!Array.isArray(inputs)) return undefined
  /** Each host's UTF-8 when it is not ASCII (an ASCII host is copied char by char). */
  const hosts: Array<Uint8Array | undefined> = []
  let length = headerLength
  for (const input of inputs) {
    if (
      input?._tag !== "Receive" ||
      typeof input.host !== "string" ||
      !isPort(input.udpPort) ||
      !Number.isFinite(input.nowMs) ||
      !(input.bytes instanceof Uint8Array) ||
      Object.keys(input).length !== 5
    ) {
      return undefined
    }
    const host = isAscii(input.host) ? undefined : encoder.encode(input.host)
    const hostLength = host?.length ?? input.host.length
    if (hostLength > 0xff) return undefined
    hosts.push(host)
    length += inputMinLength + hostLength + input.bytes.length
  }
  if (Object.keys(message).length !== 5) return undefined
  const out = new Uint8Array(length)
  const view = new DataView(out.buffer)
  out[0] = inputsMarker
  out[1] = version
  view.setFloat64(2, seq)
  view.setFloat64(10, epoch)
  view.setFloat64(18, association)
  view.setUint32(26, inputs.length)
  let offset = headerLength
  for (const [index, input] of inputs.entries()) {
    const host = hosts[index]
    const hostLength = host?.length ?? input.host.length
    view.setFloat64(offset, input.nowMs)
    view.setUint16(offset + 8, input.udpPort)
    out[offset + 10] = hostLength
    if (host !== undefined) out.set(host, offset + 11)
    else for (let at = 0; at < hostLength; at++) out[offset + 11 + at] = input.host.charCodeAt(at)
    offset += 11 + hostLength
    view.setUint32(offset, input.bytes.length)
    out.set(input.bytes, offset + 4)
    offset += 4 + input.bytes.length
  }
  return out
}

const encodeAck = (ack: Ack): Uint8Array | undefined => {
  if (!Number.isFinite(ack.seq) || Object.keys(ack).length !== 2) return undefined
  const out = new Uint8Array(ackLength)
  out[0] = ackMarker
  new DataView(out.buffer).setFloat64(1, ack.seq)
  return out
}

/**
 * Decodes what {@link encode} wrote (see {@link isBinary}). Datagrams are copies (the
 * input may be reused). Throws {@link PlainDecodeError} for anything malformed.
 */
export const decode = (bytes: Uint8Array): unknown => {
  if (bytes[0] === ackMarker) {
    if (bytes.length !== ackLength) throw new PlainDecodeError("ack: not 9 bytes")
    // + 0: a -0 reads back as 0, as it does through JSON.
    return { _tag: "Ack", seq: new DataView(bytes.buffer, bytes.byteOffset).getFloat64(1) + 0 }
  }
  if (bytes.length < headerLength) throw new PlainDecodeError("inputs: shorter than its header")
  if (bytes[0] !== inputsMarker || bytes[1] !== version) {
    throw new PlainDecodeError("inputs: unknown marker or version")
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const count = view.getUint32(26)
  if (count > (bytes.length - headerLength) / inputMinLength) {
    throw new PlainDecodeError("inputs: more inputs than bytes")
  }
  const inputs: Array<Receive> = []
  let offset = headerLength
  for (let index = 0; index < count; index++) {
    if (bytes.length - offset < inputMinLength) throw new PlainDecodeError("inputs: truncated")
    // + 0: a -0 reads back as 0, as it does through JSON.
    const nowMs = view.getFloat64(offset) + 0
    const udpPort = view.getUint16(offset + 8)
    const hostLength = bytes[offset + 10] as number
    offset += 11
    if (bytes.length - offset < hostLength + 4) throw new PlainDecodeError("inputs: truncated")
    let host: string
    try {
      host = decoder.decode(bytes.subarray(offset, offset + hostLength))
    } catch {
      throw new PlainDecodeError("inputs: a host is not UTF-8")
    }
    offset += hostLength
    const length = view.getUint32(offset)
    offset += 4
    if (bytes.length - offset < length) throw new PlainDecodeError("inputs: truncated")
    inputs.push({
      _tag: "Receive",
      host,
      udpPort,
      bytes: bytes.slice(offset, offset + length),
      nowMs,
    })
    offset += length
  }
  if (offset !== bytes.length) throw new PlainDecodeError("inputs: bytes after the last input")
  return {
    _tag: "Inputs",
    seq: view.getFloat64(2) + 0,
    epoch: view.getFloat64(10) + 0,
    association: view.getFloat64(18) + 0,
    inputs,
  }
}
