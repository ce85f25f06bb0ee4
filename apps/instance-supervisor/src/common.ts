/**
 * What `run` and `status` share: how an invocation joins the election, exit codes, and how
 * a library error becomes one line for a person.
 *
 * @since 0.1.0
 */
import { ExitCode } from "@understudy/app-kit"
import type { Election, Secret, SocketDirectory } from "@understudy/port-election"
import type { Address } from "@understudy/transport"
import { Effect } from "effect"
import { defaultAddress, type Invocation, programName, type Target } from "./cli.ts"

/** @since 0.1.0 @category constants */
export const exitCode = {
  ok: ExitCode.ok,
  usage: ExitCode.usage,
  election: 3,
  lost: 4,
} as const

/** The registry metadata key that tells run invocations from status queries. */
export const kindKey = "kind"

/**
 * The election options of an invocation; the default address's directory is created (or
 * refused, if another user could enter it) here.
 *
 * @since 0.1.0
 * @category constructors
 */
export const electionOptions = (
  target: Target,
  metadata: Readonly<Record<string, string>>,
): Effect.Effect<
  Election.ElectionOptions & { readonly address: Address.StreamAddress },
  SocketDirectory.SocketDirectoryError
> =>
  Effect.map(
    target.address === undefined ? defaultAddress(target.name) : Effect.succeed(target.address),
    (address) => ({
      program: programName,
      address,
      metadata,
      ...(target.secretPath === undefined ? {} : { secret: { path: target.secretPath } }),
    }),
  )

/** One line for any error the election can fail with. @since 0.1.0 */
export const describeElectionError = (
  error: Election.ElectionError | Secret.SecretError | SocketDirectory.SocketDirectoryError,
): string => {
  switch (error._tag) {
    case "StrangerOnAddress":
      return `${error.message} (choose another --name, --address or --port)`
    case "OtherProgramOnAddress":
      return `${error.message} (choose another --name, --address or --port)`
    case "NotPermitted":
      return `${error.message} (another user's instances hold this address)`
    case "SecretError":
      return error.message
    case "SocketDirectoryError":
      return `${error.message} (or choose an --address or --port)`
    case "ElectionFailed":
      return error.message
  }
}

/** Quotes argv the way a POSIX shell would read it back, for display only. */
export const shellQuote = (argv: ReadonlyArray<string>): string =>
  argv
    .map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`))
    .join(" ")

/** @since 0.1.0 */
export type RunInvocation = Extract<Invocation, { _tag: "Run" }>

/** @since 0.1.0 */
export type StatusInvocation = Extract<Invocation, { _tag: "Status" }>

/** Writes one line to stderr, prefixed with the program name. */
export const complain = (line: string): void => {
  process.stderr.write(`${programName}: ${line}\n`)
}
