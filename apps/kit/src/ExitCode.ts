/**
 * The exit codes every app gives: an app adds its own (instance-supervisor's election
 * errors) after these.
 *
 * @since 0.1.0
 */

/** Done as asked. @since 0.1.0 */
export const ok = 0

/** A runtime error (said on stderr). @since 0.1.0 */
export const failure = 1

/** Bad usage: the command line was refused before anything ran. @since 0.1.0 */
export const usage = 2

/** A defect in the app itself (EX_SOFTWARE). @since 0.1.0 */
export const internal = 70
