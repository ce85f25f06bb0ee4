/**
 * How to run `sctp-cluster` nodes as processes on loopback: the entry point and the command
 * line of one node of the pair 127.0.0.2 (primary) / 127.0.0.3 (secondary). The app's
 * process tests and the showcase scenario start their nodes with it, so both run the pair
 * the same way.
 *
 * @since 0.1.0
 */
import { fileURLToPath } from "node:url"

/** The program's entry point: `node <mainPath> ...args` (Node 24 runs it as is). @since 0.1.0 */
export const mainPath: string = fileURLToPath(new URL("./main.ts", import.meta.url))

/** The pair's addresses, the primary's then the secondary's (`--addresses`). @since 0.1.0 */
export const loopbackPair = ["127.0.0.2", "127.0.0.3"] as const

/**
 * The ports of one pair: the UDP encapsulation port both nodes bind on their own address,
 * and the intra-cluster link (`tcp://127.0.0.3:PORT`, where the secondary listens).
 *
 * @since 0.1.0
 * @category models
 */
export interface PairPorts {
  readonly udpPort: number
  readonly link: string
  /**
   * The pair's cluster key file (`sctp-cluster keygen`). Without it (and without a
   * `--cluster-key-file` in `extra`) the nodes run `--insecure`.
   */
  readonly keyFile?: string
}

/**
 * The arguments of one node of the loopback pair under `policy` (the words after
 * `--policy`, e.g. `["state-node", "--store", ADDRESS]`), serving its status on a port the
 * OS picks (read it from the node's `started` line), keyed with `ports.keyFile`; `extra`
 * is appended.
 *
 * @since 0.1.0
 */
export const nodeArgs = (
  role: "primary" | "secondary",
  ports: PairPorts,
  extra: ReadonlyArray<string> = [],
  policy: ReadonlyArray<string> = ["every-update"],
): Array<string> => [
  "node",
  "--role",
  role,
  "--addresses",
  loopbackPair.join(","),
  "--policy",
  ...policy,
  "--udp-port",
  String(ports.udpPort),
  "--link",
  ports.link,
  "--status",
  "tcp://127.0.0.1:0",
  ...(ports.keyFile !== undefined
    ? ["--cluster-key-file", ports.keyFile]
    : extra.includes("--cluster-key-file")
      ? []
      : ["--insecure"]),
  ...extra,
]
