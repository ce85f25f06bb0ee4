/**
 * `@understudy/store/etcd`: the etcd backend, in its own entry point so that programs that
 * only use the memory or remote store never load gRPC.
 *
 * @since 0.1.0
 */
export * as EtcdStore from "./EtcdStore.ts"
