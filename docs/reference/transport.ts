/**
 * @module @understudy/transport
 */
export * from "@understudy/transport"
