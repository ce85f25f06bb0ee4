/**
 * @understudy/store: compare-and-set, leases and watches — in memory, served over the
 * transport, or etcd — and the NameServer built on them.
 *
 * @since 0.1.0
 */
export {
  type CreateStoreOptions,
  type CreateStoreServerOptions,
  createStore,
  createStoreServer,
  type StoreBackend,
  type StoreClient,
  type StoreServerHandle,
  type StoreWatch,
} from "./Facade.ts"
export * as MemoryStore from "./MemoryStore.ts"
export * as Metrics from "./Metrics.ts"
export * as NameServer from "./NameServer.ts"
export * as RemoteStore from "./RemoteStore.ts"
export * as Store from "./Store.ts"
export * as StoreError from "./StoreError.ts"
export { StoreConfigError } from "./StoreError.ts"
export * as StoreServer from "./StoreServer.ts"
