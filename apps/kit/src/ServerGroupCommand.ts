/**
 * The command line that starts one server of the `server-group` app, for the programs that
 * start a group as real processes (the showcase, testkit's `ServerGroupProcesses`, the app's
 * own tests): one place for the `serve` argument list and the `--peers` value.
 *
 * @since 0.1.0
 */

/** One server of the group as `--peers` names it. @since 0.1.0 @category models */
export interface Peer {
  readonly id: string
  /** Its UDP port on 127.0.0.1. */
  readonly port: number
  /** Its declared capacity: the most capable server is the preferred master. */
  readonly cpu: number
  readonly bandwidthMbps: number
}

/**
 * The `--peers` value: `id=udp://127.0.0.1:PORT?cpu=N&bw=M`, comma-separated.
 *
 * @since 0.1.0
 * @category arguments
 */
export const peers = (group: ReadonlyArray<Peer>): string =>
  group
    .map(
      (peer) => `${peer.id}=udp://127.0.0.1:${peer.port}?cpu=${peer.cpu}&bw=${peer.bandwidthMbps}`,
    )
    .join(",")

/**
 * `serve --id ID --peers PEERS --http HOST:PORT --store STORE`, then `args` (`--insecure` or
 * `--cluster-key FILE`, `--data-dir`, timings...). `http` defaults to a port the OS picks on
 * loopback; the server's `ready` line says which.
 *
 * @since 0.1.0
 * @category arguments
 */
export const serve = (options: {
  readonly id: string
  readonly peers: string
  readonly store: string
  readonly http?: string
  readonly args?: ReadonlyArray<string>
}): Array<string> => [
  "serve",
  "--id",
  options.id,
  "--peers",
  options.peers,
  "--http",
  options.http ?? "127.0.0.1:0",
  "--store",
  options.store,
  ...(options.args ?? []),
]
