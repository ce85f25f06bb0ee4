/**
 * Real processes of `sctp-cluster` for the tests: spawned with this Node, read as JSON lines,
 * every one killed (and waited for) by `killAll` in `afterEach`.
 */
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { JsonLinesProcess, Ports, Usrsctp } from "@understudy/testkit"
import type { StatusReport } from "../src/report.ts"

export const mainPath = fileURLToPath(new URL("../src/main.ts", import.meta.url))

const started = new Set<JsonLinesProcess.JsonLinesProcess>()

/** `node src/main.ts ...args`, tracked for {@link killAll}. */
export const startApp = (args: ReadonlyArray<string>): JsonLinesProcess.JsonLinesProcess => {
  const app = new JsonLinesProcess.JsonLinesProcess(mainPath, args)
  started.add(app)
  return app
}

/** Runs a short command to its end (at most `timeoutMs`): exit code, stdout, stderr. */
export const runApp = (
  args: ReadonlyArray<string>,
  timeoutMs = 20_000,
): Promise<{ readonly code: number | null; readonly stdout: string; readonly stderr: string }> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, [mainPath, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      timeout: timeoutMs,
      killSignal: "SIGKILL",
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString()
    })
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    child.on("close", (code) => resolve({ code, stdout, stderr }))
  })

/** `sctp-cluster status --json` of a node; undefined while it does not answer. */
export const statusOf = async (address: string): Promise<StatusReport | undefined> => {
  const result = await runApp(["status", "--status", address, "--json"])
  return result.code === 0 ? (JSON.parse(result.stdout) as StatusReport) : undefined
}

/** SIGKILLs every app process and usrsctp program still running and waits until they are gone. */
export const killAll = async (): Promise<void> => {
  const apps = [...started]
  started.clear()
  for (const app of apps) if (!app.exited) app.kill("SIGKILL")
  await Promise.all([...apps.map((app) => app.exit()), Usrsctp.killAll()])
}

/** The ports of one cluster: UDP encapsulation (free on every address), link, usrsctp's. */
export const clusterPorts = async () => {
  const udpPort = await Usrsctp.freeEncapsulationPort()
  let clientEncapsPort = await Usrsctp.freeEncapsulationPort()
  // Two releases in a row can hand out one port twice; usrsctp's must differ from ours.
  for (let attempt = 0; attempt < 8 && clientEncapsPort === udpPort; attempt++) {
    clientEncapsPort = await Usrsctp.freeEncapsulationPort()
  }
  const linkPort = await Ports.freeTcpPort("127.0.0.3")
  return { udpPort, clientEncapsPort, link: `tcp://127.0.0.3:${linkPort}` }
}

/** The arguments of one node of the pair 127.0.0.2 (primary) / 127.0.0.3 (secondary). */
export const nodeArgs = (
  role: "primary" | "secondary",
  ports: { readonly udpPort: number; readonly link: string },
  extra: ReadonlyArray<string> = [],
  policy: ReadonlyArray<string> = ["every-update"],
): Array<string> => [
  "node",
  "--role",
  role,
  "--addresses",
  "127.0.0.2,127.0.0.3",
  "--policy",
  ...policy,
  "--udp-port",
  String(ports.udpPort),
  "--link",
  ports.link,
  "--status",
  "tcp://127.0.0.1:0",
  ...extra,
]

/** Polls `check` every 20 ms for at most `timeoutMs`; throws naming `what`. */
export const eventually = async <A>(
  what: string,
  check: () => A | undefined | Promise<A | undefined>,
  timeoutMs: number,
): Promise<A> => {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
