/**
 * @module @understudy/staggered-election
 */
export * from "@understudy/staggered-election"
