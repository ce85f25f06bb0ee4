/**
 * @module @understudy/port-election
 */
export * from "@understudy/port-election"
