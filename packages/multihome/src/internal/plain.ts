/**
 * A byte encoding for plain data with binary fields (what `Association.snapshot` and the
 * replication messages are made of): JSON for the structure, with every `Uint8Array`
 * moved out of the JSON text into a trailer of raw bytes, so packets and queued user
 * data are not inflated by base64.
 *
 * Layout: u32 length of the JSON text, the JSON text (UTF-8), then the byte fields one
 * after another. In the JSON a byte field is `{"$bytes": [offset, length]}` into the trailer.
 * Only plain objects, arrays, strings, finite numbers, booleans and null are carried;
 * `undefined` object fields are left out (as JSON does).
 */

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

/** Thrown by {@link decodePlain} for bytes that are not such an encoding. */
export class PlainDecodeError extends Error {}

const bytesKey = "$bytes"

interface Blobs {
  readonly list: Array<Uint8Array>
  /** Bytes in `list` so far: the trailer offset of the next one. */
  length: number
}

/**
 * `value` as JSON-ready data, each `Uint8Array` replaced by its trailer reference and pushed
 * on `blobs`. A walk of our own rather than a `JSON.stringify` replacer: a replacer costs a
 * call per field, and `stringify` would call a `Buffer`'s `toJSON` (an array of every byte)
 * before the replacer could swap it: on the link's hot path that was most of the encoding.
 * A field's own `toJSON` is honoured (called with its key), as `JSON.stringify` does.
 */
const lower = (value: unknown, key: string, blobs: Blobs): unknown => {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new TypeError(`not a finite number at ${key}`)
    return value
  }
  if (typeof value !== "object" || value === null) return value
  if (value instanceof Uint8Array) {
    const reference = { [bytesKey]: [blobs.length, value.length] }
    blobs.list.push(value)
    blobs.length += value.length
    return reference
  }
  const toJSON = (value as { toJSON?: unknown }).toJSON
  if (typeof toJSON === "function") return lower(toJSON.call(value, key), key, blobs)
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length)
    for (let index = 0; index < value.length; index++) {
      out[index] = lower(value[index], String(index), blobs)
    }
    return out
  }
  const out: Record<string, unknown> = {}
  for (const field in value) {
    if (!Object.hasOwn(value, field)) continue
    out[field] = lower((value as Record<string, unknown>)[field], field, blobs)
  }
  return out
}

/** Encodes `value`; throws a `TypeError` (a defect of the caller) for what it can not carry. */
export const encodePlain = (value: unknown): Uint8Array => {
  const blobs: Blobs = { list: [], length: 0 }
  const json = encoder.encode(JSON.stringify(lower(value, "", blobs)))
  const out = new Uint8Array(4 + json.length + blobs.length)
  new DataView(out.buffer).setUint32(0, json.length)
  out.set(json, 4)
  let offset = 4 + json.length
  for (const blob of blobs.list) {
    out.set(blob, offset)
    offset += blob.length
  }
  return out
}

/**
 * Decodes what {@link encodePlain} wrote. Byte fields are copies (the input may be reused).
 * Throws {@link PlainDecodeError} for anything malformed.
 */
export const decodePlain = (bytes: Uint8Array): unknown => {
  if (bytes.length < 4) throw new PlainDecodeError("shorter than its header")
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const jsonLength = view.getUint32(0)
  if (jsonLength > bytes.length - 4) throw new PlainDecodeError("JSON length past the end")
  const trailerStart = 4 + jsonLength
  const trailerLength = bytes.length - trailerStart
  let text: string
  try {
    text = decoder.decode(bytes.subarray(4, trailerStart))
  } catch {
    throw new PlainDecodeError("JSON text is not UTF-8")
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new PlainDecodeError("not JSON")
  }
  return revive(parsed, bytes.subarray(trailerStart), trailerLength, 0)
}

const maxDepth = 64

/** Replaces, in the tree `JSON.parse` just made (ours alone), each byte field reference by its bytes. */
const revive = (
  value: unknown,
  trailer: Uint8Array,
  trailerLength: number,
  depth: number,
): unknown => {
  if (depth > maxDepth) throw new PlainDecodeError("nested too deeply")
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index++) {
      value[index] = revive(value[index], trailer, trailerLength, depth + 1)
    }
    return value
  }
  if (value === null || typeof value !== "object") return value
  const record = value as Record<string, unknown>
  const reference = record[bytesKey]
  if (reference !== undefined) {
    if (
      !Array.isArray(reference) ||
      reference.length !== 2 ||
      !Number.isSafeInteger(reference[0]) ||
      !Number.isSafeInteger(reference[1])
    ) {
      throw new PlainDecodeError("a byte field reference is not [offset, length]")
    }
    const [offset, length] = reference as [number, number]
    if (offset < 0 || length < 0 || offset + length > trailerLength) {
      throw new PlainDecodeError("a byte field lies outside the trailer")
    }
    return trailer.slice(offset, offset + length)
  }
  for (const key in record) {
    // JSON.parse makes "__proto__" an own property: a field we refuse to hand on.
    if (key === "__proto__") throw new PlainDecodeError("a field named __proto__")
    record[key] = revive(record[key], trailer, trailerLength, depth + 1)
  }
  return record
}
