/**
 * @module @understudy/machine
 */
export * from "@understudy/machine"
