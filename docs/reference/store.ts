/**
 * @module @understudy/store
 */
export * from "@understudy/store"
