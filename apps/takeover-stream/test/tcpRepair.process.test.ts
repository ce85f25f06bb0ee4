/**
 * `serve --backend tcp-repair` as real processes: hosts are network namespaces (client,
 * store, A, B); an unmodified curl downloads from A, A's host dies (link down, then
 * SIGKILL), the standby B takes the connection over. Root only; the usage check always runs.
 */
import { type ChildProcess, spawnSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { NetNs } from "@understudy/testkit"
import { describe, expect, it } from "vitest"
import { mainPath } from "./support.ts"

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const service = "10.77.0.100"
const rateBytesPerSecond = 6 * 1024 * 1024

const lines = (child: ChildProcess) => {
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
    while (performance.now() < deadline) {
      const found = find(tag)
      if (found !== undefined) return found
      await sleep(5)
    }
    throw new Error(`no ${tag} line in ${timeoutMs} ms: ${stderr}`)
  }
  return { find, wait }
}

describe("takeover-stream serve --backend tcp-repair", () => {
  it("refuses an unknown backend as bad usage", () => {
    const result = spawnSync(
      process.execPath,
      [
        mainPath,
        "serve",
        "--backend",
        "kernel",
        "--id",
        "A",
        "--listen",
        "tcp://127.0.0.1:1",
        "--dir",
        tmpdir(),
        "--store",
        "tcp://127.0.0.1:1",
        "--insecure",
      ],
      { encoding: "utf8" },
    )
    expect(result.status).toBe(2)
    expect(result.stderr).toMatch(/--backend is session or tcp-repair/)
  })

  it.skipIf(NetNs.unavailableReason() !== undefined)(
    "curl finishes its download, byte for byte, when A's host dies and the standby B takes over",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "takeover-stream-tcp-repair-"))
      const lab = NetNs.Lab.create("us14app", ["client", "store", "a", "b"])
      try {
        const size = 20 * 1024 * 1024 + randomBytes(2).readUInt16LE(0)
        const object = randomBytes(size)
        writeFileSync(join(dir, "object"), object)
        const keyFile = join(dir, "cluster.key")
        writeFileSync(keyFile, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 })
        const node = [process.execPath, mainPath]
        const storeAddress = `tcp://${lab.host("store").address}:7000`
        const store = lines(
          lab.spawn("store", [...node, "store", "--listen", storeAddress, "--key-file", keyFile]),
        )
        await store.wait("ready", 20_000)
        lab.exec("a", ["ip", "addr", "add", `${service}/24`, "dev", "eth0"])
        const server = (host: string, id: string) =>
          lines(
            lab.spawn(host, [
              ...node,
              "serve",
              "--backend",
              "tcp-repair",
              "--id",
              id,
              "--listen",
              `tcp://${service}:8080`,
              "--dir",
              dir,
              "--store",
              storeAddress,
              "--key-file",
              keyFile,
              "--lease-ms",
              "600",
            ]),
          )
        const a = server("a", "A")
        const b = server("b", "B")
        await a.wait("serving", 20_000)
        await b.wait("standby", 20_000)
        lab.exec("client", ["sysctl", "-q", "-w", "net.ipv4.tcp_rmem=4096 131072 1048576"])
        const out = join(dir, "out")
        const curl = lab.spawn("client", [
          "curl",
          "-sS",
          "--fail",
          "--limit-rate",
          String(rateBytesPerSecond),
          "-o",
          out,
          `http://${service}:8080/object`,
        ])
        let curlStderr = ""
        curl.stderr!.on("data", (chunk: Buffer) => {
          curlStderr += chunk.toString()
        })
        const exited = new Promise<number | null>((resolve) =>
          curl.on("exit", (code) => resolve(code)),
        )
        const got = () => (existsSync(out) ? statSync(out).size : 0)
        // A dies with at least 1.5 s of transfer left: a late wake-up still kills it mid-way.
        const killAt = Math.floor(size * 0.35)
        const deadline = performance.now() + 30_000
        while (got() < killAt && performance.now() < deadline) await sleep(2)
        expect(got()).toBeGreaterThanOrEqual(killAt)
        lab.kill("a")
        const resumed = await b.wait("resumed", 20_000)
        const code = await Promise.race([exited, sleep(60_000).then(() => "timeout")])
        console.log(`tcp-repair app takeover: ${size} bytes, ${JSON.stringify(resumed)}`)
        expect(code).toBe(0)
        expect(curlStderr).toBe("")
        const sha = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex")
        expect(sha(readFileSync(out))).toBe(sha(object))
      } finally {
        lab.close()
        rmSync(dir, { recursive: true, force: true })
      }
    },
    90_000,
  )
})
