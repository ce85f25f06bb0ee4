/**
 * tcp-repair: an unmodified `curl` downloads a 200 MB object over plain HTTP/1.1 from host
 * A (`takeover-stream serve --backend tcp-repair`); A's host dies mid-transfer (its link
 * down, then SIGKILL: its kernel sends no FIN or RST); the standby on host B rebuilds the
 * very TCP connection from A's checkpoint with Linux's `TCP_REPAIR`, takes the service
 * address and finishes the object. curl must exit 0 with the object's SHA-256. Hosts are
 * network namespaces on a bridge (client, store, A, B): root only, otherwise the row says
 * why and how to run it.
 *
 * @since 0.1.0
 */
import type { ChildProcess } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import {
  createWriteStream,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { NetNs } from "@understudy/testkit"
import { sleep, waitFor } from "../processes.ts"
import type { Row, Scenario, ScenarioContext } from "../Scenario.ts"

const app = fileURLToPath(new URL("../../../takeover-stream/src/main.ts", import.meta.url))
const name = "tcp-repair"
const invariant = "curl exits 0 with the object's SHA-256 through its server's death"
const objectBytes = 200 * 1024 * 1024
const rateBytesPerSecond = 40 * 1024 * 1024
const service = "10.77.0.100"

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
  const wait = (tag: string, timeoutMs: number) =>
    waitFor(`${tag} (${stderr.trim()})`, () => find(tag), timeoutMs)
  return { find, wait, stderr: () => stderr }
}

const writeObject = async (file: string): Promise<string> => {
  const hash = createHash("sha256")
  const out = createWriteStream(file)
  for (let written = 0; written < objectBytes; written += 1024 * 1024) {
    const chunk = randomBytes(1024 * 1024)
    hash.update(chunk)
    if (!out.write(chunk)) await new Promise<void>((resolve) => out.once("drain", () => resolve()))
  }
  await new Promise<void>((resolve, reject) =>
    out.end((error?: Error | null) => (error ? reject(error) : resolve())),
  )
  return hash.digest("hex")
}

const run = async (context: ScenarioContext): Promise<ReadonlyArray<Row>> => {
  const unavailable = NetNs.unavailableReason()
  if (unavailable !== undefined)
    return [
      {
        scenario: name,
        failoverMs: undefined,
        invariant,
        ok: true,
        detail: "",
        note: `skipped: ${unavailable}; run as root: sudo npm start -w @understudy/showcase -- --scenario ${name}`,
      },
    ]
  const dir = mkdtempSync(join(tmpdir(), "showcase-tcp-repair-"))
  const lab = NetNs.Lab.create("us14show", ["client", "store", "a", "b"])
  try {
    context.log(`${name}: writing a 200 MB object`)
    const sha256 = await writeObject(join(dir, "object"))
    const keyFile = join(dir, "cluster.key")
    writeFileSync(keyFile, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 })
    const node = [process.execPath, app]
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
    // A client that buffers at most 1 MiB: the server's progress follows what it reads.
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
    const exited = new Promise<number | null>((resolve) => curl.on("exit", (code) => resolve(code)))
    const size = () => (existsSync(out) ? statSync(out).size : 0)
    await waitFor("curl at 40%", () => (size() >= objectBytes * 0.4 ? true : undefined), 60_000)
    context.log(`${name}: curl has ${(size() / 1048576).toFixed(0)} MiB; host A dies`)
    lab.kill("a")
    const killedAtMs = Date.now()
    const outcome = await b.wait("resumed", 20_000).catch(() => b.find("refused"))
    const code = await Promise.race([exited, sleep(120_000).then(() => "timeout" as const)])
    const got = existsSync(out) ? createHash("sha256").update(readFileSync(out)).digest("hex") : ""
    const ok = outcome?.t === "resumed" && code === 0 && got === sha256 && curlStderr === ""
    const failoverMs = outcome?.t === "resumed" ? Number(outcome.atMs) - killedAtMs : undefined
    return [
      {
        scenario: name,
        failoverMs,
        invariant,
        ok,
        detail: ok
          ? `curl exit 0, ${size()} bytes, SHA-256 right; B resumed at object offset ${outcome?.objectOffset} (detection: A's 600 ms store lease)`
          : `outcome ${JSON.stringify(outcome)}, curl exit ${code} ${curlStderr.trim()}, SHA-256 ${got === sha256 ? "right" : "wrong"}, B: ${b.stderr().trim()}`,
      },
    ]
  } finally {
    lab.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** @since 0.1.0 */
export const scenario: Scenario = {
  name,
  description:
    "curl downloads 200 MB over HTTP/1.1 from host A; A's host dies mid-transfer; B rebuilds the TCP connection (TCP_REPAIR) and curl finishes unaware",
  run,
}
