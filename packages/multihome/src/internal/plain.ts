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

/** Encodes `value`; throws a `TypeError` (a defect of the caller) for what it can not carry. */
export const encodePlain = (value: unknown): Uint8Array => {
  const blobs: Array<Uint8Array> = []
  let trailer = 0
  const text = JSON.stringify(value, function (this: unknown, key: string, field: unknown) {
    // `this[key]` is the field before any toJSON: a Uint8Array is seen as itself.
    const raw = (this as Record<string, unknown>)[key]
    if (raw instanceof Uint8Array) {
      blobs.push(raw)
      const reference = { [bytesKey]: [trailer, raw.length] }
      trailer += raw.length
      return reference
    }
    if (typeof field === "number" && !Number.isFinite(field)) {
      throw new TypeError(`not a finite number at ${key}`)
    }
    return field
  })
  const json = encoder.encode(text)
  const out = new Uint8Array(4 + json.length + trailer)
  new DataView(out.buffer).setUint32(0, json.length)
  out.set(json, 4)
  let offset = 4 + json.length
  for (const blob of blobs) {
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

const revive = (
  value: unknown,
  trailer: Uint8Array,
  trailerLength: number,
  depth: number,
): unknown => {
  if (depth > maxDepth) throw new PlainDecodeError("nested too deeply")
  if (Array.isArray(value))
    return value.map((item) => revive(item, trailer, trailerLength, depth + 1))
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
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(record)) {
    // JSON.parse makes "__proto__" an own property; copying it would set the prototype.
    if (key === "__proto__") throw new PlainDecodeError("a field named __proto__")
    out[key] = revive(record[key], trailer, trailerLength, depth + 1)
  }
  return out
}
