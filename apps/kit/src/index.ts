/**
 * @understudy/app-kit (private): what every sample app does the same way: its command line
 * on `effect/cli` (`Cli`), its exit codes (`ExitCode`), JSON lines on stdout with logs on
 * stderr (`JsonLines`), and running until a signal (`Signals`). Each app keeps its own
 * flags, messages and exit codes beyond these. For the programs that start real peers (the
 * showcase, and testkit, which re-exports them for tests): free ports (`Ports`), usrsctp's
 * example programs (`Usrsctp`), hosts as network namespaces (`NetNs`) and the `server-group`
 * app's `serve` command line (`ServerGroupCommand`).
 *
 * @since 0.1.0
 */
export * as Cli from "./Cli.ts"
export * as ExitCode from "./ExitCode.ts"
export * as JsonLines from "./JsonLines.ts"
export * as NetNs from "./NetNs.ts"
export * as Ports from "./Ports.ts"
export * as ServerGroupCommand from "./ServerGroupCommand.ts"
export * as Signals from "./Signals.ts"
export * as Usrsctp from "./Usrsctp.ts"
