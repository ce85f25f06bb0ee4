/**
 * usrsctp's loopback quirk and the table of loopback aliases an endpoint learns from it
 * (see {@link loopbackAlias}): which address a local peer's packets are answered at.
 */
import { networkInterfaces } from "node:os"
import * as Association from "../../Association.ts"
import type * as Chunk from "../../Chunk.ts"
import type * as Cookie from "../../Cookie.ts"
import type { Alias } from "../../Endpoint.ts"
import { canonicalHost, listedAddresses, parseIpv4, parseIpv6 } from "../association-support.ts"

const udpKey = (host: string, port: number) => `${port}|${host}`

/** Entries of the loopback alias table: far more than the loopback peers of one host. */
const maxAliases = 1_024

export const isSpecificIp = (host: string) =>
  (parseIpv4(host) !== undefined || parseIpv6(host) !== undefined) &&
  host !== "0.0.0.0" &&
  canonicalHost(host) !== "::"

const isLoopback = (host: string) => host.startsWith("127.") || host === "::1"

/**
 * usrsctp's loopback quirk, found by interop: its UDP socket is bound to the wildcard, so
 * what it sends to 127.0.0.2 leaves from the kernel's choice, 127.0.0.1; but its
 * association's local addresses are its interfaces' non-loopback addresses (its INIT /
 * INIT ACK lists them, e.g. the eth0 address and a ULA IPv6, or lists none, as `tsctp`
 * does), and it drops every packet sent back to 127.0.0.1. A loopback source means the peer
 * runs on this host, so its addresses are this host's, and reachable: the endpoint answers
 * such a peer (that UDP address) at its first listed address of the source's family, or,
 * when it lists none, at the first of `hostAddresses` of that family. Returns that address,
 * or undefined when the rule does not apply (the source is listed or not loopback, or no
 * address of its family is known).
 *
 * @since 0.1.0
 * @category interop
 */
export const loopbackAlias = (
  sourceHost: string,
  chunk: Chunk.Init | Chunk.InitAck,
  hostAddresses: ReadonlyArray<string> = [],
): string | undefined => {
  return aliasFor(canonicalHost(sourceHost), listedAddresses(chunk.parameters), hostAddresses)
}

/** {@link loopbackAlias} for a canonical source host and the addresses the peer listed. */
const aliasFor = (
  host: string,
  listed: ReadonlyArray<string>,
  hostAddresses: ReadonlyArray<string>,
): string | undefined => {
  if (!isLoopback(host)) return undefined
  if (listed.includes(host)) return undefined
  const v6 = host.includes(":")
  const candidates = listed.length > 0 ? listed : hostAddresses.map(canonicalHost)
  return candidates.find((address) => address.includes(":") === v6 && !isLoopback(address))
}

/**
 * The {@link loopbackAlias} entries an association implies: each loopback path is answered
 * at the association's first non-loopback path of the same family (a path the peer listed).
 * A node taking over a replica calls it (`adopt` does), since it never saw the INIT. A peer
 * that listed no address (tsctp) implies none: replicate the primary's `aliases` for it.
 *
 * @since 0.1.0
 * @category interop
 */
export const aliasesOf = (state: Association.State): Array<Alias> => {
  const paths = Association.info(state).paths
  const result: Array<Alias> = []
  for (const path of paths) {
    if (!isLoopback(path.host)) continue
    const v6 = path.host.includes(":")
    const target = paths.find((other) => !isLoopback(other.host) && other.host.includes(":") === v6)
    if (target !== undefined) {
      result.push({
        from: { host: path.host, udpPort: path.udpPort },
        host: target.host,
      })
    }
  }
  return result
}

/** This host's addresses a local peer may use: non-internal, not link-local (no scope needed). */
export const interfaceAddresses = (): Array<string> =>
  Object.values(networkInterfaces())
    .flatMap((addresses) => addresses ?? [])
    .filter((address) => !address.internal && !address.address.toLowerCase().startsWith("fe80:"))
    .map((address) => address.address)

/**
 * Loopback sources and the address to answer them at (see {@link loopbackAlias}). An entry
 * is learned only with an association (its creation, or our INIT's INIT ACK) and removed
 * with the last association it serves (its owners): a bare INIT, which anyone can send,
 * never redirects a peer's address. Replicated entries (`add` with no owner) have no owner
 * here. At most `maxAliases` entries; past it `onFull` is told and nothing is added.
 */
export class LoopbackAliases {
  readonly #aliases = new Map<string, string>()
  readonly #owners = new Map<string, number>()
  readonly #ofAssociation = new Map<number, Array<string>>()
  readonly #hostAddresses: ReadonlyArray<string>
  readonly #onFull: () => void

  constructor(hostAddresses: ReadonlyArray<string>, onFull: () => void) {
    this.#hostAddresses = hostAddresses
    this.#onFull = onFull
  }

  /** The host to send to `to` at: its alias, else its own. */
  hostFor(to: Association.PeerAddress): string {
    return this.#aliases.size === 0
      ? to.host
      : (this.#aliases.get(udpKey(to.host, to.udpPort)) ?? to.host)
  }

  /** Adds `alias`, owned by association `owner` (undefined: replicated, never released). */
  add(alias: Alias, owner: number | undefined): void {
    const key = udpKey(alias.from.host, alias.from.udpPort)
    if (!this.#aliases.has(key) && this.#aliases.size >= maxAliases) {
      this.#onFull()
      return
    }
    this.#aliases.set(key, alias.host)
    if (owner === undefined) return
    this.#owners.set(key, (this.#owners.get(key) ?? 0) + 1)
    const owned = this.#ofAssociation.get(owner) ?? []
    owned.push(key)
    this.#ofAssociation.set(owner, owned)
  }

  /** The INIT ACK of our own INIT from `from`: association `owner` owns its alias. */
  learnFromInitAck(owner: number, from: Association.PeerAddress, initAck: Chunk.InitAck): void {
    const host = loopbackAlias(from.host, initAck, this.#hostAddresses)
    if (host !== undefined) this.add({ from, host }, owner)
  }

  /** The alias a new association from `from` needs, by its INIT's addresses (the cookie's). */
  learnFromCookie(
    owner: number,
    from: Association.PeerAddress,
    cookie: Cookie.CookieContents,
  ): void {
    if (cookie.sourceListed === true) return
    const host = aliasFor(canonicalHost(from.host), cookie.peerAddresses, this.#hostAddresses)
    if (host !== undefined) this.add({ from, host }, owner)
  }

  /** Association `owner` is gone: the aliases only it owned go. */
  release(owner: number): void {
    for (const key of this.#ofAssociation.get(owner) ?? []) {
      const left = (this.#owners.get(key) ?? 1) - 1
      if (left > 0) this.#owners.set(key, left)
      else {
        this.#owners.delete(key)
        this.#aliases.delete(key)
      }
    }
    this.#ofAssociation.delete(owner)
  }

  /** The table, to replicate to another node. */
  list(): Array<Alias> {
    return [...this.#aliases].map(([key, host]): Alias => {
      const separator = key.indexOf("|")
      return {
        from: {
          host: key.slice(separator + 1),
          udpPort: Number(key.slice(0, separator)),
        },
        host,
      }
    })
  }
}
