/**
 * @understudy/store: compare-and-set, leases and watches — in memory, served over the
 * transport, or etcd.
 *
 * @since 0.1.0
 */
export * as MemoryStore from "./MemoryStore.ts"
export * as Store from "./Store.ts"
export * as StoreError from "./StoreError.ts"
