/**
 * Idle associations (not part of `npm run bench`): what one endpoint holding many idle
 * associations costs, i.e. its timers (a HEARTBEAT timer per path, armed all the time).
 * `node bench/idle.ts [--associations N] [--heartbeat-ms H] [--idle-seconds S]
 * [--repetitions R] [--compare-with DIR]`.
 *
 * A server endpoint (its own OS process, `--role server`) listens on 127.0.0.1; a clients
 * process (`--role clients`) opens N associations to it (default 1,000), one client endpoint
 * each, with HEARTBEATs every H ms (default 30,000, the default). Once all are up and 2 s
 * have passed, the server collects garbage and reports its heap and RSS, then its CPU time
 * (user + system) per second over S idle seconds (default 20). With `--compare-with DIR`
 * (another copy of this package, e.g. an older commit's) each repetition also runs DIR's
 * server against this copy's clients: before/after figures taken in the same run,
 * interleaved. Prints one line per run, then one JSON line with the medians.
 * Every process it starts is killed after its run and at exit; a child also exits when its
 * stdin closes (the bench is gone).
 */
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { JsonLinesProcess } from "@understudy/testkit"
import { Address, NodeDatagram } from "@understudy/transport"
import { Effect, Stream } from "effect"
import * as Endpoint from "../src/Endpoint.ts"

const argument = (name: string): string | undefined => {
  const index = process.argv.indexOf(`--${name}`)
  return index < 0 ? undefined : process.argv[index + 1]
}
const count = (name: string, fallback: number): number => {
  const value = Number(argument(name) ?? fallback)
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} needs a positive integer`)
  return value
}

const host = "127.0.0.1"
const serverSctpPort = 5000
const associations = count("associations", 1_000)
const heartbeatMs = count("heartbeat-ms", 30_000)
const idleSeconds = count("idle-seconds", 20)
const runTimeoutMs = 300_000

const print = (line: Record<string, unknown>) => console.log(JSON.stringify(line))
/** Children end with the bench: their stdin closes when it is gone. */
const exitWithStdin = () => {
  process.stdin.on("close", () => process.exit(0))
  process.stdin.resume()
}

const server = Effect.gen(function* () {
  setFlagsFromString("--expose-gc")
  const collect = runInNewContext("gc") as () => void
  const endpoint = yield* Endpoint.make({
    bind: Address.udp(host, 0),
    port: serverSctpPort,
    listen: true,
    backlog: associations,
    config: { heartbeatInterval: heartbeatMs },
  })
  print({ t: "ready", udpPort: endpoint.address.port })
  yield* endpoint.accept.pipe(Stream.take(associations), Stream.runDrain)
  yield* Effect.sleep(2_000)
  collect()
  const memory = process.memoryUsage()
  const cpuBefore = process.cpuUsage()
  const startedMs = performance.now()
  yield* Effect.sleep(idleSeconds * 1_000)
  const cpu = process.cpuUsage(cpuBefore)
  const seconds = (performance.now() - startedMs) / 1_000
  const stats = yield* endpoint.stats
  print({
    t: "idle",
    associations: stats.associations,
    heapMb: memory.heapUsed / 1e6,
    rssMb: memory.rss / 1e6,
    cpuMsPerSecond: (cpu.user + cpu.system) / 1_000 / seconds,
  })
  return yield* Effect.never
})

const clients = (udpPort: number) =>
  Effect.forEach(
    Array.from({ length: associations }, (_, index) => index),
    (index) =>
      Effect.gen(function* () {
        const endpoint = yield* Endpoint.make({
          bind: Address.udp(host, 0),
          port: 10_000 + index,
          config: { heartbeatInterval: heartbeatMs },
        })
        yield* endpoint.connect({ host, udpPort, port: serverSctpPort, timeout: "60 seconds" })
      }),
    { concurrency: 32, discard: true },
  ).pipe(Effect.andThen(Effect.sync(() => print({ t: "up" }))), Effect.andThen(Effect.never))

/** One run: a server from `directory` (this copy's or the compared one's), this copy's clients. */
const runOnce = async (directory: string) => {
  const serverProcess = new JsonLinesProcess.JsonLinesProcess(`${directory}/bench/idle.ts`, [
    ...process.argv.slice(2),
    "--role",
    "server",
  ])
  try {
    const ready = await serverProcess.line("ready", 60_000)
    const clientsProcess = new JsonLinesProcess.JsonLinesProcess(
      new URL(import.meta.url).pathname,
      [...process.argv.slice(2), "--role", "clients", "--udp-port", String(ready.udpPort)],
    )
    await clientsProcess.line("up", runTimeoutMs)
    const idle = await serverProcess.line("idle", runTimeoutMs)
    if (idle.associations !== associations)
      throw new Error(`${String(idle.associations)} associations, not ${associations}`)
    return idle as { heapMb: number; rssMb: number; cpuMsPerSecond: number }
  } finally {
    JsonLinesProcess.killAll()
  }
}

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

const role = argument("role")
if (role === "server") {
  exitWithStdin()
  Effect.runFork(Effect.scoped(server).pipe(Effect.provide(NodeDatagram.layer)))
} else if (role === "clients") {
  exitWithStdin()
  Effect.runFork(
    Effect.scoped(clients(Number(argument("udp-port")))).pipe(Effect.provide(NodeDatagram.layer)),
  )
} else {
  process.once("exit", () => JsonLinesProcess.killAll())
  const here = new URL("..", import.meta.url).pathname.replace(/\/$/, "")
  const compared = argument("compare-with")
  const variants =
    compared === undefined
      ? [["this", here]]
      : [
          ["this", here],
          ["compared", compared],
        ]
  const runs = new Map<string, Array<{ heapMb: number; rssMb: number; cpuMsPerSecond: number }>>()
  for (let repetition = 0; repetition < count("repetitions", 3); repetition++) {
    for (const [name, directory] of variants) {
      const run = await runOnce(directory!)
      runs.set(name!, [...(runs.get(name!) ?? []), run])
      console.log(
        `${name!.padEnd(9)} heap ${run.heapMb.toFixed(1)} MB  rss ${run.rssMb.toFixed(1)} MB  cpu ${run.cpuMsPerSecond.toFixed(2)} ms/s`,
      )
    }
  }
  const figures = Object.fromEntries(
    [...runs].map(([name, measured]) => [
      name,
      {
        heapMb: Number(median(measured.map((run) => run.heapMb)).toFixed(2)),
        rssMb: Number(median(measured.map((run) => run.rssMb)).toFixed(2)),
        cpuMsPerSecond: Number(median(measured.map((run) => run.cpuMsPerSecond)).toFixed(3)),
      },
    ]),
  )
  print({ bench: "multihome-idle", associations, heartbeatMs, idleSeconds, figures })
}
