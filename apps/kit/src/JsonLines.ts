/**
 * What an app prints: one JSON object per line on stdout (what tests and the showcase
 * read), every log on stderr, so stdout holds nothing else.
 *
 * @since 0.1.0
 */
import { Logger } from "effect"

/** Writes `value` as one JSON line on stdout, stamped with the wall clock (`wallMs`). @since 0.1.0 */
export const line = (value: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify({ ...value, wallMs: Date.now() })}\n`)
}

/** Logs go to stderr (logfmt), so stdout holds only JSON lines. @since 0.1.0 */
export const stderrLogger = Logger.layer([Logger.withConsoleError(Logger.formatLogFmt)])
