/**
 * @module @understudy/heartbeat-pool
 */
export * from "@understudy/heartbeat-pool"
