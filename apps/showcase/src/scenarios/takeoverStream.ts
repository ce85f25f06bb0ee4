/**
 * Takeover of a live download: `apps/takeover-stream` as 5 OS processes (the embedded store,
 * 3 object servers, one client) and a 200 MB object. The server sending it is SIGKILLed
 * twice mid-transfer. Shown: where each takeover resumed (the object offset) and by whom.
 * Measured: the client's gap, from the loss of its connection to the first resumed byte
 * (the dead server's 1 s lease lapsing included). Checked: the client's file has the
 * object's SHA-256: no byte lost or repeated.
 *
 * @since 0.1.0
 */
import { createHash, randomBytes } from "node:crypto"
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Ports } from "@understudy/app-kit"
import { ClusterKey } from "@understudy/transport"
import { Effect } from "effect"
import { commandPath } from "../apps.ts"
import { type Child, makeGroup, waitFor } from "../processes.ts"
import type { Row, Scenario, ScenarioContext } from "../Scenario.ts"

const script = commandPath("@understudy/app-takeover-stream", "takeover-stream")

const objectBytes = 200 * 1000 * 1000
/** Where the two SIGKILLs land, as fractions of the object the client has written. */
const killAt = [0.3, 0.65]
const boundMs = 180_000

type Line = Record<string, unknown>

/** Writes `bytes` random bytes to `path`, 1 MiB at a time; returns their SHA-256. */
const writeObject = (path: string, bytes: number): string => {
  const hash = createHash("sha256")
  const fd = openSync(path, "w")
  try {
    for (let written = 0; written < bytes; ) {
      const chunk = randomBytes(Math.min(1024 * 1024, bytes - written))
      writeSync(fd, chunk)
      hash.update(chunk)
      written += chunk.length
    }
  } finally {
    closeSync(fd)
  }
  return hash.digest("hex")
}

const sizeOf = (path: string) => {
  try {
    return statSync(path).size
  } catch {
    return 0
  }
}

const run = async ({ log }: ScenarioContext): Promise<ReadonlyArray<Row>> => {
  const dir = mkdtempSync(join(tmpdir(), "showcase-takeover-stream-"))
  const group = makeGroup()
  try {
    const keyFile = join(dir, "cluster.key")
    await Effect.runPromise(ClusterKey.generateFile(keyFile))
    const objects = join(dir, "objects")
    mkdirSync(objects)
    const sha256 = writeObject(join(objects, "big.bin"), objectBytes)
    log(`wrote a ${objectBytes / 1e6} MB object, sha256 ${sha256.slice(0, 16)}…`)

    const spawn = (label: string, args: ReadonlyArray<string>) => {
      const lines: Array<Line> = []
      const child = group.spawnScript(label, script, args, (text) => {
        if (text.startsWith("{")) lines.push(JSON.parse(text) as Line)
      })
      return { child, lines }
    }
    const ready = (p: { child: Child; lines: Array<Line> }) =>
      waitFor(`${p.child.label} ready`, () => p.lines.find((line) => line.t === "ready"), 60_000)

    const storeAddress = `tcp://127.0.0.1:${await Ports.freeTcpPort()}`
    const store = spawn("store", ["store", "--listen", storeAddress, "--key-file", keyFile])
    await ready(store)
    const servers = await Promise.all(
      ["s1", "s2", "s3"].map(async (id) => ({
        id,
        address: `tcp://127.0.0.1:${await Ports.freeTcpPort()}`,
      })),
    )
    const running = servers.map((server) => ({
      ...server,
      ...spawn(server.id, [
        "serve",
        "--id",
        server.id,
        "--listen",
        server.address,
        "--dir",
        objects,
        "--store",
        storeAddress,
        "--key-file",
        keyFile,
      ]),
    }))
    for (const server of running) await ready(server)
    log(`3 servers up (lease 1 s, a checkpoint every 4 MiB); downloading big.bin`)

    const output = join(dir, "big.out")
    const get = spawn("get", [
      "get",
      "big.bin",
      "-o",
      output,
      "--service",
      servers.map((s) => s.address).join(","),
      "--key-file",
      keyFile,
    ])
    const resumedLines = () => get.lines.filter((line) => line.t === "resumed")
    let serving = servers[0]!.address
    const kills: Array<{ victim: string; atBytes: number }> = []
    for (const fraction of killAt) {
      const atBytes = await waitFor(
        `${fraction * 100}% written`,
        () => {
          const size = sizeOf(output)
          return size >= fraction * objectBytes ? size : undefined
        },
        boundMs,
      )
      const victim = running.find((server) => server.address === serving)!
      victim.child.process.kill("SIGKILL")
      kills.push({ victim: victim.id, atBytes })
      log(`SIGKILL ${victim.id} (serving) with ${(atBytes / 1e6).toFixed(1)} MB written`)
      const resumed = await waitFor(
        `a takeover after the SIGKILL of ${victim.id}`,
        () => resumedLines()[kills.length - 1],
        boundMs,
      )
      serving = String(resumed.server)
      log(
        `resumed by ${running.find((s) => s.address === serving)?.id} at byte ${resumed.offset} after a ${resumed.gapMs} ms gap`,
      )
    }
    const done = await waitFor(
      "the download done",
      () => get.lines.find((l) => l.t === "done"),
      boundMs,
    )
    const whole = done.sha256 === sha256 && done.bytes === objectBytes
    log(
      `done: ${done.bytes} bytes, sha256 ${String(done.sha256).slice(0, 16)}… ${whole ? "matches" : "DOES NOT match"}`,
    )
    return kills.map((kill, index) => {
      const resumed = resumedLines()[index]!
      return {
        scenario: `takeover-stream: SIGKILL ${kill.victim} mid-download`,
        failoverMs: Number(resumed.gapMs),
        invariant: "the client's 200 MB file has the object's SHA-256",
        ok: whole,
        detail: `resumed at byte ${resumed.offset} by ${running.find((s) => s.address === resumed.server)?.id}; ${done.bytes} bytes, sha256 ${whole ? "matches" : "differs"}`,
      } satisfies Row
    })
  } finally {
    await group.killAll()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** @since 0.1.0 */
export const scenario: Scenario = {
  name: "takeover-stream",
  description:
    "a 200 MB download from 3 object servers; SIGKILL the serving server twice mid-transfer",
  run,
}
