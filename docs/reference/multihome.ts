/**
 * @module @understudy/multihome
 */
export * from "@understudy/multihome"
