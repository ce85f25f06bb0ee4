/**
 * The in-process `Store`: the default for tests and single-process programs. Multi-version
 * like etcd: one revision counter, a bounded history of changes for watches (older changes
 * are compacted automatically), and leases that expire on the Effect `Clock`, so tests
 * drive expiry with `TestClock`.
 *
 * @since 0.1.0
 */
import { Deferred, type Duration, Effect, Layer, Option, Schema, Stream } from "effect"
import * as Config from "./internal/config.ts"
import * as Validate from "./internal/validate.ts"
import * as Metrics from "./Metrics.ts"
import {
  type DeleteOptions,
  type KeyValue,
  type Lease,
  limits,
  type PutOptions,
  type RangeResult,
  Store,
  type WatchEvent,
} from "./Store.ts"
import { Compacted, Conflict, LeaseExpired, type StoreConfigError } from "./StoreError.ts"

/** @since 0.1.0 @category models */
export interface MemoryStoreOptions {
  /** Changes kept for watches; older ones are compacted. Default 100,000. */
  readonly historyMax?: number
  /** How often expired leases are swept. Default 50 ms. */
  readonly leaseSweep?: Duration.Input
}

interface LeaseState {
  readonly ttlMs: number
  expiresAtMs: number
  readonly keys: Set<string>
}

/**
 * Builds a memory store whose lease sweeper lives in the current scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: MemoryStoreOptions = {}) =>
  Effect.gen(function* () {
    const config = yield* Config.decode(
      "MemoryStore",
      Schema.Struct({ historyMax: Config.whole, leaseSweep: Config.duration }),
      options,
    )
    const historyMax = config.historyMax ?? 100_000
    const sweepMs = Config.millis(config.leaseSweep, 50)
    const data = new Map<string, KeyValue>()
    const leases = new Map<string, LeaseState>()
    let history: Array<WatchEvent> = []
    let revision = 0
    /** Watches may start at this revision or later. */
    let compactRevision = 1
    let leaseCounter = 0
    let changed = Deferred.makeUnsafe<void>()

    const now = Effect.clockWith((clock) => clock.currentTimeMillis)

    const record = (events: ReadonlyArray<WatchEvent>) => {
      for (const event of events) history.push(event)
      if (history.length > historyMax) {
        const dropped = history.length - historyMax
        // Keep whole revisions: several events may share one.
        let cut = dropped
        while (cut < history.length && history[cut]!.revision === history[cut - 1]!.revision) cut++
        compactRevision = history[cut]?.revision ?? revision + 1
        history = history.slice(cut)
      }
      const previous = changed
      changed = Deferred.makeUnsafe<void>()
      Deferred.doneUnsafe(previous, Effect.void)
    }

    const deleteKeys = (keys: Iterable<string>) => {
      const events: Array<WatchEvent> = []
      let next: number | undefined
      for (const key of keys) {
        const kv = data.get(key)
        if (kv === undefined) continue
        next ??= ++revision
        data.delete(key)
        if (kv.lease !== undefined) leases.get(kv.lease)?.keys.delete(key)
        events.push({ _tag: "Delete", revision: next, key, previous: kv })
      }
      if (events.length > 0) record(events)
    }

    const endLease = (id: string) => {
      const lease = leases.get(id)
      if (lease === undefined) return
      leases.delete(id)
      deleteKeys([...lease.keys])
    }

    const expireLeases = Effect.map(now, (nowMs) => {
      for (const [id, lease] of leases) if (lease.expiresAtMs <= nowMs) endLease(id)
    })

    yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(sweepMs), expireLeases)))

    const currentRevision = (key: string): number => data.get(key)?.modRevision ?? 0

    const get = (key: string) =>
      Effect.gen(function* () {
        yield* Validate.key(key)
        yield* expireLeases
        return Option.fromUndefinedOr(data.get(key))
      })

    const range = (prefix: string) =>
      Effect.gen(function* () {
        yield* Validate.prefix(prefix)
        yield* expireLeases
        const items = [...data.values()]
          .filter((kv) => kv.key.startsWith(prefix))
          .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
          .slice(0, limits.rangeItemsMax)
        return { revision, items } satisfies RangeResult
      })

    const put = (key: string, value: Uint8Array, options: PutOptions = {}) =>
      Effect.gen(function* () {
        yield* Validate.key(key)
        yield* Validate.value(value)
        if (options.ifModRevision !== undefined) {
          yield* Validate.revision("ifModRevision", options.ifModRevision)
        }
        yield* expireLeases
        const lease = options.lease === undefined ? undefined : leases.get(options.lease)
        if (options.lease !== undefined && lease === undefined) {
          return yield* new LeaseExpired({ lease: options.lease })
        }
        const actual = currentRevision(key)
        if (options.ifModRevision !== undefined && options.ifModRevision !== actual) {
          return yield* new Conflict({ key, expected: options.ifModRevision, actual })
        }
        const previous = data.get(key)
        const next = ++revision
        if (previous?.lease !== undefined && previous.lease !== options.lease) {
          leases.get(previous.lease)?.keys.delete(key)
        }
        const kv: KeyValue = {
          key,
          value: value.slice(),
          createRevision: previous?.createRevision ?? next,
          modRevision: next,
          version: (previous?.version ?? 0) + 1,
          lease: options.lease,
        }
        data.set(key, kv)
        if (options.lease !== undefined) lease!.keys.add(key)
        record([{ _tag: "Put", revision: next, kv }])
        return { revision: next }
      })

    const del = (key: string, options: DeleteOptions = {}) =>
      Effect.gen(function* () {
        yield* Validate.key(key)
        if (options.ifModRevision !== undefined) {
          yield* Validate.revision("ifModRevision", options.ifModRevision)
        }
        yield* expireLeases
        const actual = currentRevision(key)
        if (options.ifModRevision !== undefined && options.ifModRevision !== actual) {
          return yield* new Conflict({ key, expected: options.ifModRevision, actual })
        }
        if (actual === 0) return { revision, deleted: false }
        deleteKeys([key])
        return { revision, deleted: true }
      })

    const grantLease = (ttlMs: number) =>
      Effect.gen(function* () {
        yield* Validate.ttl(ttlMs)
        const nowMs = yield* now
        const id = `${++leaseCounter}`
        leases.set(id, { ttlMs, expiresAtMs: nowMs + ttlMs, keys: new Set() })
        return { id, ttlMs } satisfies Lease
      })

    const keepAlive = (id: string) =>
      Effect.gen(function* () {
        yield* expireLeases
        const lease = leases.get(id)
        if (lease === undefined) return yield* new LeaseExpired({ lease: id })
        lease.expiresAtMs = (yield* now) + lease.ttlMs
      })

    const revokeLease = (id: string) => Effect.sync(() => endLease(id))

    /** Index of the first event at or after `from` (history is sorted by revision). */
    const firstIndex = (from: number): number => {
      let low = 0
      let high = history.length
      while (low < high) {
        const mid = (low + high) >>> 1
        if (history[mid]!.revision < from) low = mid + 1
        else high = mid
      }
      return low
    }

    const watch = (prefix: string, options: { readonly fromRevision?: number } = {}) =>
      Stream.unwrap(
        Effect.gen(function* () {
          yield* Validate.prefix(prefix)
          if (options.fromRevision !== undefined) {
            yield* Validate.revision("fromRevision", options.fromRevision)
          }
          let next = options.fromRevision ?? revision + 1
          const pull = Effect.gen(function* () {
            while (true) {
              if (next < compactRevision) {
                return yield* new Compacted({ requested: next, compactRevision })
              }
              const waitFor = changed
              const events: Array<WatchEvent> = []
              for (let i = firstIndex(next); i < history.length; i++) {
                const event = history[i]!
                const key = event._tag === "Put" ? event.kv.key : event.key
                if (key.startsWith(prefix)) events.push(event)
              }
              next = revision + 1
              if (events.length > 0)
                return events as unknown as readonly [WatchEvent, ...Array<WatchEvent>]
              yield* Deferred.await(waitFor)
            }
          })
          return Stream.fromPull(Effect.succeed(pull))
        }),
      )

    const compact = (rev: number) =>
      Effect.gen(function* () {
        yield* Validate.revision("revision", rev)
        if (rev <= compactRevision) return
        const cut = Math.min(rev, revision + 1)
        history = history.slice(firstIndex(cut))
        compactRevision = cut
      })

    return Store.of(
      Metrics.instrument("memory", {
        get,
        range,
        put,
        delete: del,
        grantLease,
        keepAlive,
        revokeLease,
        watch,
        compact,
      }),
    )
  })

/**
 * A fresh memory store as a `Layer`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Store> = Layer.effect(
  Store,
  // The defaults are valid: nothing to refuse.
  Effect.orDie(make()),
)

/** A memory store with options. @since 0.1.0 @category layers */
export const layerWith = (options: MemoryStoreOptions): Layer.Layer<Store, StoreConfigError> =>
  Layer.effect(Store, make(options))
