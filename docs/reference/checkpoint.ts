/**
 * @module @understudy/checkpoint
 */
export * from "@understudy/checkpoint"
