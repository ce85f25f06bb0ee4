/**
 * `serve --backend tcp-repair` on hosts made of Linux network namespaces (root only): a
 * client, the embedded store, server A holding the service address and standby B, on one
 * bridge. An unmodified `curl` downloads from the service; `kill` is a host's death (its link
 * down, then SIGKILL: its kernel sends no FIN or RST). The process test and the showcase
 * drive their takeovers through it.
 *
 * @since 0.1.0
 */
import type { ChildProcess } from "node:child_process"
import { randomBytes } from "node:crypto"
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { NetNs } from "@understudy/app-kit"

const mainPath = fileURLToPath(new URL("./main.ts", import.meta.url))

/** The address the servers serve and take over, on the lab's network. @since 0.1.0 */
export const service = "10.77.0.100"
const port = 8080

/** The JSON lines a process printed, and the end of its stderr. @since 0.1.0 */
export interface Lines {
  readonly find: (tag: string) => Record<string, unknown> | undefined
  /** The first line tagged `tag`, waited for at most `timeoutMs`. */
  readonly wait: (tag: string, timeoutMs: number) => Promise<Record<string, unknown>>
  readonly stderr: () => string
}

const linesOf = (child: ChildProcess): Lines => {
  const seen: Array<Record<string, unknown>> = []
  createInterface({ input: child.stdout! }).on("line", (text) => {
    if (text.startsWith("{")) seen.push(JSON.parse(text) as Record<string, unknown>)
  })
  let stderr = ""
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2_000)
  })
  const find = (tag: string) => seen.find((line) => line.t === tag)
  const wait = async (tag: string, timeoutMs: number) => {
    const deadline = performance.now() + timeoutMs
    for (;;) {
      const found = find(tag)
      if (found !== undefined) return found
      if (performance.now() > deadline)
        throw new Error(`no ${tag} line in ${timeoutMs} ms: ${stderr.trim()}`)
      await sleep(5)
    }
  }
  return { find, wait, stderr: () => stderr }
}

/** A curl download running in the client host. @since 0.1.0 */
export interface Download {
  /** Bytes curl has written so far. */
  readonly bytes: () => number
  /** Resolves with curl's exit code, or "timeout" after `timeoutMs`. */
  readonly exit: (timeoutMs: number) => Promise<number | null | "timeout">
  readonly stderr: () => string
}

/** @since 0.1.0 */
export interface TcpRepairLab {
  readonly lab: NetNs.Lab
  /** Server A (serving the address) and B (standby). */
  readonly a: Lines
  readonly b: Lines
  /** curl downloads `name` (a file of the servers' directory) into `out`, at most `rateBytesPerSecond`. */
  readonly download: (name: string, out: string, rateBytesPerSecond: number) => Download
  /**
   * curl uploads the file `from` as `name` (HTTP PUT, `curl -T`), at most
   * `rateBytesPerSecond`; `bytes` is what the servers stored of it.
   */
  readonly upload: (from: string, name: string, rateBytesPerSecond: number) => Download
  /** A host's death. */
  readonly kill: (host: "a" | "b") => void
  /** Stops every process and deletes every namespace. */
  readonly close: () => void
}

/**
 * Starts the lab: namespaces tagged `tag`, the store, A serving the files of `dir` and B
 * standing by, both on a store lease of `leaseMs`. Resolves once A serves and B stands by.
 *
 * @since 0.1.0
 */
export const start = async (options: {
  readonly tag: string
  readonly dir: string
  readonly leaseMs: number
}): Promise<TcpRepairLab> => {
  const lab = NetNs.Lab.create(options.tag, ["client", "store", "a", "b"])
  // Not in the served directory: a client could GET the key, or PUT its own.
  const keyDir = mkdtempSync(join(tmpdir(), "takeover-stream-key-"))
  const close = () => {
    lab.close()
    rmSync(keyDir, { recursive: true, force: true })
  }
  try {
    const keyFile = join(keyDir, "cluster.key")
    writeFileSync(keyFile, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 })
    const node = [process.execPath, mainPath]
    const storeAddress = `tcp://${lab.host("store").address}:7000`
    const store = linesOf(
      lab.spawn("store", [...node, "store", "--listen", storeAddress, "--key-file", keyFile]),
    )
    // Bounds for a loaded machine, where starting Node alone may take many seconds.
    await store.wait("ready", 60_000)
    lab.exec("a", ["ip", "addr", "add", `${service}/24`, "dev", "eth0"])
    const server = (host: string, id: string) =>
      linesOf(
        lab.spawn(host, [
          ...node,
          "serve",
          "--backend",
          "tcp-repair",
          "--id",
          id,
          "--listen",
          `tcp://${service}:${port}`,
          "--dir",
          options.dir,
          "--store",
          storeAddress,
          "--key-file",
          keyFile,
          "--lease-ms",
          String(options.leaseMs),
        ]),
      )
    const a = server("a", "A")
    const b = server("b", "B")
    await a.wait("serving", 60_000)
    await b.wait("standby", 60_000)
    // A client that buffers at most 1 MiB: the server's progress follows what it reads, so
    // a server dies with the rest of the object still to send.
    lab.exec("client", ["sysctl", "-q", "-w", "net.ipv4.tcp_rmem=4096 131072 1048576"])
    /** curl in the client host; `bytes` is the size of `progress` (the file it writes, or reads). */
    const curlRun = (args: ReadonlyArray<string>, progress: () => number): Download => {
      const curl = lab.spawn("client", ["curl", "-sS", "--fail", ...args])
      let stderr = ""
      curl.stderr!.on("data", (chunk: Buffer) => {
        stderr += chunk.toString()
      })
      const exited = new Promise<number | null>((resolve) =>
        curl.on("exit", (code) => resolve(code)),
      )
      return {
        bytes: progress,
        exit: (timeoutMs) =>
          Promise.race([exited, sleep(timeoutMs).then(() => "timeout" as const)]),
        stderr: () => stderr,
      }
    }
    const sizeOf = (file: string) => (existsSync(file) ? statSync(file).size : 0)
    const download = (name: string, out: string, rateBytesPerSecond: number) =>
      curlRun(
        [
          "--limit-rate",
          String(rateBytesPerSecond),
          "-o",
          out,
          `http://${service}:${port}/${name}`,
        ],
        () => sizeOf(out),
      )
    // An upload's progress is what the servers stored: its partial file in `dir` (one
    // upload at a time), then the whole file under its name.
    const upload = (from: string, name: string, rateBytesPerSecond: number) =>
      curlRun(
        [
          "--limit-rate",
          String(rateBytesPerSecond),
          "-T",
          from,
          `http://${service}:${port}/${name}`,
        ],
        () => {
          const partial = readdirSync(options.dir).find((file) => file.startsWith(".upload-"))
          return partial === undefined
            ? sizeOf(join(options.dir, name))
            : sizeOf(join(options.dir, partial))
        },
      )
    return { lab, a, b, download, upload, kill: (host) => lab.kill(host), close }
  } catch (error) {
    close()
    throw error
  }
}
