/**
 * Hosts for tests as Linux network namespaces: a LAN namespace holding a bridge, and one
 * namespace per host with a veth link to it and an address of a private test network that
 * exists only inside these namespaces. A host's death is `kill`: its link goes down first
 * (its kernel sends no FIN or RST, as a power cut looks from the wire), then every process
 * started in it is SIGKILLed. Root only (`ip netns`).
 *
 * Every namespace carries the lab's unique prefix, so `sweep(prefix)` removes what a crashed
 * run left behind.
 *
 * @since 0.1.0
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"

const ip = (...args: ReadonlyArray<string>): string =>
  execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })

/** Whether this process may create network namespaces (root on Linux with `ip`). @since 0.1.0 @category availability */
export const unavailableReason = (): string | undefined => {
  if (process.platform !== "linux")
    return `network namespaces are Linux's; this is ${process.platform}`
  if (process.getuid?.() !== 0) return "creating network namespaces needs root"
  try {
    ip("-V")
  } catch {
    return "the ip command (iproute2) is missing"
  }
  return undefined
}

/** Deletes every namespace whose name starts with `prefix`. @since 0.1.0 @category cleanup */
export const sweep = (prefix: string): void => {
  const names = ip("netns", "list")
    .split("\n")
    .map((line) => line.split(" ")[0]!)
    .filter((name) => name.startsWith(prefix))
  for (const name of names) {
    try {
      ip("netns", "del", name)
    } catch {
      // Already gone.
    }
  }
}

/** One host of a lab. @since 0.1.0 @category models */
export interface Host {
  readonly name: string
  /** The namespace's name. */
  readonly netns: string
  /** Its own address on the lab network. */
  readonly address: string
  readonly interfaceName: string
}

/**
 * A lab: hosts on one bridge. `create` it, `close` it in `afterAll` / `finally`.
 *
 * @since 0.1.0
 * @category constructors
 */
export class Lab {
  readonly prefix: string
  readonly subnet: string
  readonly hosts = new Map<string, Host>()
  private readonly lan: string
  private readonly processes = new Map<string, Set<ChildProcess>>()

  private constructor(prefix: string, subnet: string) {
    this.prefix = prefix
    this.subnet = subnet
    this.lan = `${prefix}-lan`
  }

  /**
   * A lab with `hostNames`, addressed `<subnet>.2`, `.3`, ... in order (`/24`). The prefix
   * is `<tag>-<random>`: namespaces are global to the machine.
   */
  static create(tag: string, hostNames: ReadonlyArray<string>, subnet = "10.77.0"): Lab {
    const lab = new Lab(`${tag}-${randomBytes(3).toString("hex")}`, subnet)
    try {
      ip("netns", "add", lab.lan)
      ip("-n", lab.lan, "link", "add", "br0", "type", "bridge")
      ip("-n", lab.lan, "link", "set", "br0", "up")
      for (const [i, name] of hostNames.entries()) lab.addHost(name, `${subnet}.${i + 2}`, i)
    } catch (error) {
      lab.close()
      throw error
    }
    return lab
  }

  private addHost(name: string, address: string, index: number): void {
    const netns = `${this.prefix}-${name}`
    const peer = `h${index}`
    ip("netns", "add", netns)
    ip("-n", netns, "link", "set", "lo", "up")
    ip("-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", this.lan)
    ip("-n", this.lan, "link", "set", peer, "master", "br0")
    ip("-n", this.lan, "link", "set", peer, "up")
    ip("-n", netns, "addr", "add", `${address}/24`, "dev", "eth0")
    ip("-n", netns, "link", "set", "eth0", "up")
    this.hosts.set(name, { name, netns, address, interfaceName: "eth0" })
    this.processes.set(name, new Set())
  }

  host(name: string): Host {
    const host = this.hosts.get(name)
    if (host === undefined) throw new Error(`no host ${name} in lab ${this.prefix}`)
    return host
  }

  /** Runs a command in a host and returns its stdout. */
  exec(name: string, command: ReadonlyArray<string>): string {
    return execFileSync("ip", ["netns", "exec", this.host(name).netns, ...command], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    })
  }

  /** Starts a process in a host (piped stdio); `kill` and `close` stop it. */
  spawn(name: string, command: ReadonlyArray<string>): ChildProcess {
    const child = spawn("ip", ["netns", "exec", this.host(name).netns, ...command], {
      stdio: ["pipe", "pipe", "pipe"],
    })
    child.stdin!.on("error", () => {})
    const set = this.processes.get(name)!
    set.add(child)
    child.on("exit", () => set.delete(child))
    return child
  }

  /** Adds `address` to a host and announces it with gratuitous ARP (iputils `arping -U`). */
  claimAddress(name: string, address: string): void {
    ip("-n", this.host(name).netns, "addr", "add", `${address}/24`, "dev", "eth0")
    this.exec(name, ["arping", "-q", "-U", "-c", "1", "-I", "eth0", address])
  }

  /** A host's death: its link down first (nothing more leaves it), then its processes SIGKILLed. */
  kill(name: string): void {
    ip("-n", this.host(name).netns, "link", "set", "eth0", "down")
    for (const child of this.processes.get(name) ?? []) child.kill("SIGKILL")
  }

  /** Stops every process and deletes every namespace of the lab. */
  close(): void {
    for (const set of this.processes.values()) for (const child of set) child.kill("SIGKILL")
    sweep(this.prefix)
  }
}
