/**
 * The wire protocol between `RemoteStore` and `StoreServer`: JSON frames validated by Effect
 * Schemas. A client sends `Request`s (an id and one operation); the server answers each by
 * id, in any order, and streams watch events under the id of the `Watch` request.
 *
 * Each side decodes only what the other side may send, so a server-bound message arriving
 * at a client (or the reverse) is a protocol error, like any other malformed frame.
 */
import { Codec } from "@understudy/transport"
import { Schema } from "effect"
import type { KeyValue, WatchEvent } from "../Store.ts"
import { Compacted, Conflict, InvalidRequest, LeaseExpired, Unavailable } from "../StoreError.ts"

/** Request and watch ids: a client picks them, unique among its outstanding requests. */
const Id = Schema.Number.check(Schema.isInt())

/**
 * Numbers that the store checks itself (`internal/validate.ts`), so that an out-of-range
 * revision or TTL gets a typed `InvalidRequest` answer instead of a dropped connection.
 */
const Num = Schema.Number

const Bytes = Schema.Uint8ArrayFromBase64

/** A key-value on the wire; `lease` is left out when there is none (JSON has no undefined). */
export const WireKeyValue = Schema.Struct({
  key: Schema.String,
  value: Bytes,
  createRevision: Num,
  modRevision: Num,
  version: Num,
  lease: Schema.optionalKey(Schema.String),
})
export type WireKeyValue = typeof WireKeyValue.Type

export const WireEvent = Schema.Union([
  Schema.TaggedStruct("Put", { revision: Num, kv: WireKeyValue }),
  Schema.TaggedStruct("Delete", {
    revision: Num,
    key: Schema.String,
    previous: Schema.optionalKey(WireKeyValue),
  }),
])
export type WireEvent = typeof WireEvent.Type

export const Operation = Schema.Union([
  Schema.TaggedStruct("Get", { key: Schema.String }),
  Schema.TaggedStruct("Range", { prefix: Schema.String }),
  Schema.TaggedStruct("Put", {
    key: Schema.String,
    value: Bytes,
    lease: Schema.optionalKey(Schema.String),
    ifModRevision: Schema.optionalKey(Num),
  }),
  Schema.TaggedStruct("Delete", { key: Schema.String, ifModRevision: Schema.optionalKey(Num) }),
  Schema.TaggedStruct("GrantLease", { ttlMs: Num }),
  Schema.TaggedStruct("KeepAlive", { lease: Schema.String }),
  Schema.TaggedStruct("RevokeLease", { lease: Schema.String }),
  Schema.TaggedStruct("Compact", { revision: Num }),
  /** Answered by `Watching`, then `Events` until `WatchFailed` or `CancelWatch`. */
  Schema.TaggedStruct("Watch", { prefix: Schema.String, fromRevision: Schema.optionalKey(Num) }),
  /** Ends the watch started by the request with id `watch`; not answered. */
  Schema.TaggedStruct("CancelWatch", { watch: Id }),
])
export type Operation = typeof Operation.Type

export const Request = Schema.TaggedStruct("Request", { id: Id, op: Operation })
export type Request = typeof Request.Type

export const WireError = Schema.Union([
  Conflict,
  LeaseExpired,
  Unavailable,
  Compacted,
  InvalidRequest,
])
export type WireError = typeof WireError.Type

/** What a successful operation gives back, one case per operation. */
export const Result = Schema.Union([
  Schema.TaggedStruct("Value", { kv: Schema.optionalKey(WireKeyValue) }),
  Schema.TaggedStruct("Range", { revision: Num, items: Schema.Array(WireKeyValue) }),
  Schema.TaggedStruct("Written", { revision: Num }),
  Schema.TaggedStruct("Deleted", { revision: Num, deleted: Schema.Boolean }),
  Schema.TaggedStruct("Lease", { lease: Schema.String, ttlMs: Num }),
  Schema.TaggedStruct("Done", {}),
])
export type Result = typeof Result.Type

export const Response = Schema.Union([
  Schema.TaggedStruct("Ok", { id: Id, result: Result }),
  /**
   * Part of a range answer too large for one frame: its items come before the `Ok` that
   * carries the rest.
   */
  Schema.TaggedStruct("Partial", { id: Id, items: Schema.Array(WireKeyValue) }),
  Schema.TaggedStruct("Failed", { id: Id, error: WireError }),
  /** The watch is live, from this revision on (the server picks it for "from now"). */
  Schema.TaggedStruct("Watching", { id: Id, fromRevision: Num }),
  /**
   * Events in revision order. `complete`: the last revision in this message has no more
   * events to come (a message split for size may end inside a revision).
   */
  Schema.TaggedStruct("Events", {
    id: Id,
    events: Schema.Array(WireEvent),
    complete: Schema.Boolean,
  }),
  Schema.TaggedStruct("WatchFailed", { id: Id, error: WireError }),
])
export type Response = typeof Response.Type

/** Everything either side sends: the transport's `Connection<A>` has one type both ways. */
export type Message = Request | Response

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder("utf-8", { fatal: true })

const jsonCodec = <In, Out>(
  name: string,
  encodeSchema: Schema.Codec<Out, unknown>,
  decodeSchema: Schema.Codec<In, unknown>,
): Codec.Codec<Message> => {
  const encode = Schema.encodeUnknownSync(encodeSchema)
  const decode = Schema.decodeUnknownSync(decodeSchema)
  return Codec.make<Message>({
    name,
    encode: (message) => textEncoder.encode(JSON.stringify(encode(message))),
    decode: (payload) => decode(JSON.parse(textDecoder.decode(payload))) as Message,
  })
}

/** The server's codec: sends responses, accepts only requests. */
export const serverCodec: Codec.Codec<Message> = jsonCodec("store-server", Response, Request)

/** The client's codec: sends requests, accepts only responses. */
export const clientCodec: Codec.Codec<Message> = jsonCodec("store-client", Request, Response)

/**
 * Largest frame either side accepts: a value at `limits.valueBytesMax` grows by a third in
 * base64, plus its key and the envelope.
 */
export const frameBytesMaxDefault = 2 * 1024 * 1024

/**
 * Payload bytes a server puts in one range page or event batch before starting another,
 * well under the frame limit so the envelope always fits. One item over it still goes
 * alone (a value at the limit fits a frame by construction).
 */
export const batchBytesTarget = 512 * 1024

/** A rough upper bound of an item's encoded size, for splitting batches. */
export const kvWireBytes = (kv: KeyValue): number =>
  Math.ceil((kv.value.byteLength * 4) / 3) + kv.key.length * 6 + 128

export const eventWireBytes = (event: WatchEvent): number =>
  event._tag === "Put"
    ? kvWireBytes(event.kv) + 32
    : event.key.length * 6 + 64 + (event.previous === undefined ? 0 : kvWireBytes(event.previous))

export const toWireKeyValue = (kv: KeyValue): WireKeyValue =>
  kv.lease === undefined
    ? {
        key: kv.key,
        value: kv.value,
        createRevision: kv.createRevision,
        modRevision: kv.modRevision,
        version: kv.version,
      }
    : {
        key: kv.key,
        value: kv.value,
        createRevision: kv.createRevision,
        modRevision: kv.modRevision,
        version: kv.version,
        lease: kv.lease,
      }

export const fromWireKeyValue = (kv: WireKeyValue): KeyValue => ({
  key: kv.key,
  value: kv.value,
  createRevision: kv.createRevision,
  modRevision: kv.modRevision,
  version: kv.version,
  lease: kv.lease,
})

export const toWireEvent = (event: WatchEvent): WireEvent =>
  event._tag === "Put"
    ? { _tag: "Put", revision: event.revision, kv: toWireKeyValue(event.kv) }
    : event.previous === undefined
      ? { _tag: "Delete", revision: event.revision, key: event.key }
      : {
          _tag: "Delete",
          revision: event.revision,
          key: event.key,
          previous: toWireKeyValue(event.previous),
        }

export const fromWireEvent = (event: WireEvent): WatchEvent =>
  event._tag === "Put"
    ? { _tag: "Put", revision: event.revision, kv: fromWireKeyValue(event.kv) }
    : {
        _tag: "Delete",
        revision: event.revision,
        key: event.key,
        previous: event.previous === undefined ? undefined : fromWireKeyValue(event.previous),
      }
