/**
 * Address takeover across hosts (`--takeover-interface`), the way keepalived moves a virtual
 * IP: the dead node's address is added to one of this host's interfaces, then announced
 * with gratuitous ARP, so the LAN's neighbour caches (the peer's, or its router's) send it
 * here; it leaves the interface when the node gives it back.
 *
 * @since 0.1.0
 */
import { execFile } from "node:child_process"
import { isIPv4 } from "node:net"
import { Cluster } from "@understudy/multihome"
import { Effect } from "effect"

/** `ip` and `arping` are quick; past this they are stuck. */
const commandTimeoutMs = 5_000

const run = (
  file: string,
  args: ReadonlyArray<string>,
): Effect.Effect<void, Cluster.ClusterError> =>
  Effect.callback<void, Cluster.ClusterError>((resume) => {
    const child = execFile(
      file,
      [...args],
      { timeout: commandTimeoutMs, killSignal: "SIGKILL" },
      (error, _stdout, stderr) =>
        resume(
          error === null
            ? Effect.void
            : Effect.fail(
                new Cluster.ClusterError({
                  detail: `${file} ${args.join(" ")}: ${stderr.trim() || error.message}`,
                }),
              ),
        ),
    )
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/**
 * Claims an address on `interfaceName` (`ip addr replace ADDR/32`, so a claim left over from
 * an earlier run is no error) and announces it with an unsolicited ARP (iputils `arping -U`,
 * Debian iputils-arping). The announcement goes out at once but arping exits only a second
 * later: the address is bound meanwhile, and a failed announcement is logged. IPv4 only:
 * IPv6 would need an unsolicited neighbour advertisement.
 *
 * @since 0.1.0
 * @category constructors
 */
export const onInterface = (interfaceName: string): Cluster.AddressClaim => ({
  claim: (host) =>
    isIPv4(host)
      ? Effect.andThen(
          run("ip", ["addr", "replace", `${host}/32`, "dev", interfaceName]),
          Effect.forkDetach(
            run("arping", ["-q", "-U", "-c", "1", "-I", interfaceName, host]).pipe(
              Effect.catch((error) =>
                Effect.logWarning(`no gratuitous ARP for ${host}: ${error.detail}`),
              ),
            ),
          ),
        )
      : Effect.fail(
          new Cluster.ClusterError({
            detail: `${host}: address takeover across hosts is IPv4 only (gratuitous ARP)`,
          }),
        ),
  release: (host) => Effect.ignore(run("ip", ["addr", "del", `${host}/32`, "dev", interfaceName])),
})
