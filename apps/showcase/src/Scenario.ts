/**
 * What every showcase scenario is: a name, and a run that starts real processes, injects
 * the failure the scenario is about, and gives rows for the final table.
 *
 * @since 0.1.0
 */

/** One line of the final table. @since 0.1.0 @category models */
export interface Row {
  readonly scenario: string
  /** Milliseconds from the injected failure to recovery; undefined where no failover. */
  readonly failoverMs: number | undefined
  readonly invariant: string
  readonly ok: boolean
  /** What was measured, for the reader: counts, maxima, why it failed. */
  readonly detail: string
  /** Shown beside the result even when ok: how the scenario ran (e.g. which peer). */
  readonly note?: string
}

/** The outside SCTP peers of `sctp-cluster` (`auto`: usrsctp when it is installed). @since 0.1.0 */
export const sctpPeers = ["auto", "usrsctp", "understudy"] as const

/** What the command line sets for the scenarios. @since 0.1.0 @category models */
export interface Options {
  readonly sctpPeer: (typeof sctpPeers)[number]
}

/** @since 0.1.0 */
export const defaultOptions: Options = { sctpPeer: "auto" }

/** @since 0.1.0 @category models */
export interface ScenarioContext {
  /** Prints a live progress line. */
  readonly log: (line: string) => void
  /** Default {@link defaultOptions}. */
  readonly options?: Options
}

/** @since 0.1.0 @category models */
export interface Scenario {
  readonly name: string
  /** One sentence: what runs and what is killed. */
  readonly description: string
  /**
   * Runs to the end, bounded in time, and kills every process it started even when it
   * fails. A scenario that throws is reported as one failed row.
   */
  readonly run: (context: ScenarioContext) => Promise<ReadonlyArray<Row>>
}
