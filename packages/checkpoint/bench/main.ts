/**
 * Benchmark of the portable `session` backend on loopback (`npm run bench`), all in one run:
 * - throughput of an object transfer checkpointed at the default policy (every 4 MiB)
 *   against the same transfer with no checkpoint after the first (a horizon above the
 *   object: the baseline), and against plain `node:net` streaming of the same bytes;
 *   alternating runs; and a bundle's member over TCP, UDP and multicast (16 MiB each);
 * - the takeover gap: a transfer's server is stopped mid-way (its lease revoked, so
 *   detection is immediate) and the client measures from the loss of its connection to the
 *   first resumed byte: the gap after detection;
 * - the same after a SIGKILL of a server process (`bench/sessionServer.ts`, a store served
 *   from here): from the SIGKILL to the first resumed byte, detection (the lease lapsing, to
 *   the standby's adoption) reported apart;
 * - the same takeover done the HTTP-range way (tus-style): the server's socket is destroyed
 *   mid-way and the client reconnects with `Range: bytes=N-`, measured from the loss to the
 *   first byte of the new response;
 * - a two-way session (`DuplexSession`, the `echo` application): the client writes 32 MiB
 *   while it reads the answer, checkpointed both ways, against the same echo over a plain
 *   `node:net` connection (ratio, alternating runs); and the gap after a SIGKILL of its
 *   server process, from the SIGKILL to the first answer byte read from the standby,
 *   detection reported apart.
 * Prints a table, then one JSON line. UNDERSTUDY_BENCH_RUNS (default 3),
 * UNDERSTUDY_BENCH_TAKEOVERS (default 20), UNDERSTUDY_BENCH_SIGKILLS (default 20) and
 * UNDERSTUDY_BENCH_DUPLEX_SIGKILLS (default 10) set the counts.
 */
import { createServer as createHttpServer, get as httpGet } from "node:http"
import {
  type AddressInfo,
  connect,
  createServer as createNetServer,
  type Server as NetServer,
} from "node:net"
import { fileURLToPath } from "node:url"
import { MemoryStore, Store, StoreServer } from "@understudy/store"
import { JsonLinesProcess } from "@understudy/testkit"
import { Address, NodeTransport } from "@understudy/transport"
import { Effect, Exit, Fiber, Layer, Redacted, Scope, Stream } from "effect"
import type { ConnectionTransport } from "../src/Checkpoint.ts"
import * as CheckpointStore from "../src/CheckpointStore.ts"
import * as DuplexSession from "../src/DuplexSession.ts"
import * as ObjectBundle from "../src/ObjectBundle.ts"
import * as ObjectSession from "../src/ObjectSession.ts"
import type { PolicyInput } from "../src/Policy.ts"
import * as Proof from "../src/Proof.ts"
import { echo } from "./echo.ts"

const runs = Number(process.env.UNDERSTUDY_BENCH_RUNS ?? 3)
const takeovers = Number(process.env.UNDERSTUDY_BENCH_TAKEOVERS ?? 20)
const sigkills = Number(process.env.UNDERSTUDY_BENCH_SIGKILLS ?? 20)
const duplexSigkills = Number(process.env.UNDERSTUDY_BENCH_DUPLEX_SIGKILLS ?? 10)
const duplexBytes = 32 * 1024 * 1024
const duplexChunkBytes = 64 * 1024
const leaseMs = 1_000
const objectBytes = 128 * 1024 * 1024
const takeoverObjectBytes = 16 * 1024 * 1024
const object = new Uint8Array(objectBytes).map((_, i) => (i * 31 + (i >>> 11)) & 0xff)
const key = Proof.newSecret()
const clusterKey = Redacted.make(key)
const source: ObjectSession.ObjectSource = {
  size: (name) =>
    Effect.succeed(
      name === "big" ? objectBytes : name === "small" ? takeoverObjectBytes : undefined,
    ),
  read: (_name, offset, length) => Effect.succeed(object.subarray(offset, offset + length)),
}
const noCheckpoints: PolicyInput = { everyBytes: 1024 * 1024 * 1024 }

const percentile = (values: ReadonlyArray<number>, p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}
const median = (values: ReadonlyArray<number>) => percentile(values, 50)
/** Wall clock with sub-millisecond resolution, comparable across processes of one host. */
const wallMs = () => performance.timeOrigin + performance.now()
const mibPerSecond = (bytes: number, ms: number) => bytes / 1048576 / (ms / 1000)

const storeScope = Effect.runSync(Scope.make())
const store: Store.Store["Service"] = await Effect.runPromise(
  Scope.provide(MemoryStore.make(), storeScope),
)

const startServer = async (serverId: string, policy: PolicyInput, windowBytesMax?: number) => {
  const scope = Effect.runSync(Scope.make())
  const server = await Effect.runPromise(
    ObjectSession.serve(
      {
        listen: Address.tcp("127.0.0.1", 0),
        clusterKey,
        policy,
        ...(windowBytesMax === undefined ? {} : { windowBytesMax }),
        duplex: echo,
      },
      source,
    ).pipe(
      Effect.provideServiceEffect(
        CheckpointStore.CheckpointStore,
        CheckpointStore.make({
          serverId,
          backend: "session",
          prefix: CheckpointStore.defaultPrefix("bench"),
          leaseTtl: 1_000,
        }),
      ),
      Effect.provideService(Store.Store, store),
      Effect.provide(NodeTransport.layer),
      Scope.provide(scope),
    ),
  )
  return { server, stop: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

/** One download; calls `midway` once when a third has arrived. */
const download = (
  name: string,
  service: ReadonlyArray<Address.StreamAddress>,
  midway?: () => Promise<void>,
) =>
  Effect.runPromise(
    Effect.gen(function* () {
      let bytes = 0
      let called = false
      const gaps: Array<number> = []
      const resumedAtMs: Array<number> = []
      const startedMs = performance.now()
      yield* ObjectSession.get(name, {
        service,
        clusterKey,
        retryDelay: 1,
        onResumed: (event) => {
          resumedAtMs.push(wallMs())
          gaps.push(event.gapMs)
        },
      }).pipe(
        Stream.runForEach((chunk) =>
          Effect.gen(function* () {
            bytes += chunk.length
            if (midway !== undefined && !called && bytes > takeoverObjectBytes / 3) {
              called = true
              yield* Effect.promise(midway)
            }
          }),
        ),
      )
      return { bytes, ms: performance.now() - startedMs, gaps, resumedAtMs }
    }).pipe(Effect.provide(NodeTransport.layer)),
  )

/** Listens on a free loopback port (a `node:net` or `node:http` server); gives the port. */
const listenLoopback = async (server: NetServer): Promise<number> => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return (server.address() as AddressInfo).port
}

/**
 * One two-way session of `bytes` through the echo application: writes in 64 KiB chunks while
 * it reads the answer, checked byte for byte. `midway` runs once when a third of the answer
 * is read; `resumedAtMs` is when the first answer byte after each takeover was read.
 */
const duplexSession = (
  service: ReadonlyArray<Address.StreamAddress>,
  bytes: number,
  midway?: () => Promise<void>,
) =>
  Effect.runPromise(
    Effect.gen(function* () {
      let resuming = false
      const resumedAtMs: Array<number> = []
      const startedMs = performance.now()
      const client = yield* DuplexSession.connect({
        service,
        clusterKey,
        retryDelay: 1,
        onResumed: () => {
          resuming = true
        },
      })
      const writer = yield* Effect.forkScoped(
        Effect.gen(function* () {
          for (let at = 0; at < bytes; at += duplexChunkBytes)
            yield* client.write(object.subarray(at, Math.min(bytes, at + duplexChunkBytes)))
          yield* client.end
        }),
      )
      let read = 0
      let called = false
      yield* Stream.runForEach(client.read, (chunk) =>
        Effect.gen(function* () {
          if (resuming) {
            resuming = false
            resumedAtMs.push(wallMs())
          }
          if (Buffer.compare(chunk, object.subarray(read, read + chunk.length)) !== 0)
            throw new Error(`duplex: the answer differs at byte ${read}`)
          read += chunk.length
          if (midway !== undefined && !called && read > bytes / 3) {
            called = true
            yield* Effect.promise(midway)
          }
        }),
      )
      yield* Fiber.join(writer)
      if (read !== bytes) throw new Error(`duplex: ${read} bytes read of ${bytes}`)
      return { ms: performance.now() - startedMs, resumedAtMs }
    }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer)),
  )

/** The same echo over plain `node:net`: the client writes `duplexBytes` and reads them back. */
const plainDuplex = async (): Promise<number> => {
  const server = createNetServer((socket) => socket.pipe(socket))
  const port = await listenLoopback(server)
  const startedMs = performance.now()
  let read = 0
  await new Promise<void>((resolve, reject) => {
    const socket = connect(port, "127.0.0.1")
    socket.on("data", (chunk: Buffer) => {
      if (Buffer.compare(chunk, object.subarray(read, read + chunk.length)) !== 0)
        reject(new Error(`plain duplex: the answer differs at byte ${read}`))
      read += chunk.length
      if (read === duplexBytes) socket.end()
    })
    socket.on("close", () => resolve())
    socket.on("error", reject)
    socket.end(object.subarray(0, duplexBytes))
  })
  const ms = performance.now() - startedMs
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (read !== duplexBytes) throw new Error(`plain duplex read ${read} bytes`)
  return ms
}

const memberTransports = [
  "tcp",
  "udp",
  "udp-multicast",
] as const satisfies ReadonlyArray<ConnectionTransport>
/** One member of a bundle (a control connection, one data flow over `transport`): MiB/s. */
const bundleMember = (address: Address.StreamAddress, transport: ConnectionTransport) =>
  Effect.runPromise(
    Effect.gen(function* () {
      const client = yield* ObjectBundle.connect({
        service: [address],
        clusterKey,
        multicastInterface: "127.0.0.1",
      })
      const startedMs = performance.now()
      const member = yield* client.get("small", { transport })
      let bytes = 0
      yield* Stream.runForEach(member.bytes, (chunk) =>
        Effect.sync(() => {
          bytes += chunk.length
        }),
      )
      const ms = performance.now() - startedMs
      yield* client.close
      if (bytes !== takeoverObjectBytes) throw new Error(`bundle ${transport}: ${bytes} bytes`)
      return mibPerSecond(bytes, ms)
    }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer)),
  )

/** Plain streaming of the same bytes over `node:net`, no session layer at all. */
const plainTcp = async (): Promise<number> => {
  const server = createNetServer((socket) => {
    socket.end(object)
  })
  const port = await listenLoopback(server)
  const startedMs = performance.now()
  let bytes = 0
  await new Promise<void>((resolve, reject) => {
    const socket = connect(port, "127.0.0.1")
    socket.on("data", (chunk) => {
      bytes += chunk.length
    })
    socket.on("end", resolve)
    socket.on("error", reject)
  })
  const ms = performance.now() - startedMs
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (bytes !== objectBytes) throw new Error(`plain TCP read ${bytes} bytes`)
  return ms
}

/** The HTTP-range way: the server's socket dies at a third; the client asks for the rest. */
const rangeTakeover = async (): Promise<number> => {
  const body = object.subarray(0, takeoverObjectBytes)
  let cut = false
  const server = createHttpServer((request, response) => {
    const from = Number(/^bytes=(\d+)-$/.exec(request.headers.range ?? "")?.[1] ?? 0)
    response.writeHead(from === 0 ? 200 : 206, { "content-length": body.length - from })
    if (from === 0 && !cut) {
      cut = true
      response.write(body.subarray(0, Math.floor(body.length / 3)), () => request.socket.destroy())
    } else response.end(body.subarray(from))
  })
  const port = await listenLoopback(server)
  let received = 0
  let lostMs: number | undefined
  let gapMs: number | undefined
  for (let attempt = 0; attempt < 5 && received < body.length; attempt++) {
    await new Promise<void>((resolve) => {
      const request = httpGet(
        {
          host: "127.0.0.1",
          port,
          agent: false,
          headers: received === 0 ? {} : { range: `bytes=${received}-` },
        },
        (response) => {
          response.on("data", (chunk: Buffer) => {
            if (lostMs !== undefined && gapMs === undefined) gapMs = performance.now() - lostMs
            received += chunk.length
          })
          response.on("end", resolve)
          response.on("error", resolve)
          response.on("aborted", resolve)
          response.on("close", resolve)
        },
      )
      request.on("error", resolve)
    })
    if (received < body.length) lostMs ??= performance.now()
  }
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (received !== body.length || gapMs === undefined)
    throw new Error(`range download: ${received} bytes, gap ${gapMs}`)
  return gapMs
}

const [checkpointed, baseline] = [
  await startServer("cp", {}),
  await startServer("plain", noCheckpoints),
]
const session = { checkpointed: [] as Array<number>, baseline: [] as Array<number> }
const tcp: Array<number> = []
const duplex = { checkpointed: [] as Array<number>, plain: [] as Array<number> }
const members = Object.fromEntries(memberTransports.map((t) => [t, [] as Array<number>]))
try {
  for (let run = 0; run < runs; run++) {
    for (const [which, server] of [
      ["checkpointed", checkpointed],
      ["baseline", baseline],
    ] as const) {
      const result = await download("big", [server.server.address])
      if (result.bytes !== objectBytes) throw new Error(`${which}: ${result.bytes} bytes`)
      session[which].push(mibPerSecond(objectBytes, result.ms))
    }
    tcp.push(mibPerSecond(objectBytes, await plainTcp()))
    duplex.checkpointed.push(
      mibPerSecond(
        duplexBytes,
        (await duplexSession([checkpointed.server.address], duplexBytes)).ms,
      ),
    )
    duplex.plain.push(mibPerSecond(duplexBytes, await plainDuplex()))
    for (const transport of memberTransports)
      members[transport]!.push(await bundleMember(checkpointed.server.address, transport))
  }
} finally {
  await checkpointed.stop()
  await baseline.stop()
}

const gaps: Array<number> = []
for (let i = 0; i < takeovers; i++) {
  const a = await startServer(`ga${i}`, {}, 1024 * 1024)
  const b = await startServer(`gb${i}`, {}, 1024 * 1024)
  try {
    const result = await download("small", [a.server.address, b.server.address], a.stop)
    if (result.bytes !== takeoverObjectBytes || result.gaps.length !== 1)
      throw new Error(`takeover ${i}: ${result.bytes} bytes, ${result.gaps.length} resumes`)
    gaps.push(result.gaps[0]!)
  } finally {
    await a.stop()
    await b.stop()
  }
}
/**
 * Takeovers after a SIGKILL: two server processes (`bench/sessionServer.ts`) on a store
 * served from here; the serving one is SIGKILLed at a third of the object. From the SIGKILL:
 * detection (the standby adopts the bundle once the dead server's lease lapses: its
 * `takenover` line) and the gap after it (to the first resumed byte at the client).
 */
const killed = {
  total: [] as Array<number>,
  detection: [] as Array<number>,
  after: [] as Array<number>,
}
const duplexKilled = {
  total: [] as Array<number>,
  detection: [] as Array<number>,
  after: [] as Array<number>,
}
{
  const scope = Effect.runSync(Scope.make())
  const storeServer = await Effect.runPromise(
    StoreServer.serve(Address.tcp("127.0.0.1", 0), { clusterKey }).pipe(
      Effect.provide(Layer.merge(MemoryStore.layer, NodeTransport.layer)),
      Scope.provide(scope),
    ),
  )
  const script = fileURLToPath(new URL("./sessionServer.ts", import.meta.url))
  const spawnServer = async (id: string) => {
    const process = new JsonLinesProcess.JsonLinesProcess(script, [
      id,
      Address.format(storeServer.address),
      Buffer.from(key).toString("hex"),
      String(leaseMs),
      String(takeoverObjectBytes),
    ])
    const ready = await process.line("ready", 60_000)
    const address = Address.parseStream(String(ready.address))
    if (address instanceof Address.InvalidAddress) throw new Error(address.reason)
    return { process, address }
  }
  try {
    let spawned = 0
    let [serving, standby] = [
      await spawnServer(`k${spawned++}`),
      await spawnServer(`k${spawned++}`),
    ]
    /**
     * One SIGKILL of the serving process a third of the way through `transfer`, the standby
     * taking over; then the standby serves the next one, a new standby behind it.
     */
    const killRound = async (
      label: string,
      transfer: (
        service: ReadonlyArray<Address.StreamAddress>,
        midway: () => Promise<void>,
      ) => Promise<{ readonly resumedAtMs: ReadonlyArray<number> }>,
      into: typeof killed,
    ) => {
      let killedAtMs = 0
      const result = await transfer([serving.address, standby.address], async () => {
        killedAtMs = wallMs()
        serving.process.kill("SIGKILL")
      })
      if (result.resumedAtMs.length !== 1)
        throw new Error(`${label}: ${result.resumedAtMs.length} resumes`)
      const takenOver = standby.process.lines.filter((l) => l.t === "takenover")
      if (takenOver.length !== 1) throw new Error(`${label}: ${takenOver.length} takeovers`)
      const adoptedAtMs = Number(takenOver[0]!.atMs)
      into.total.push(result.resumedAtMs[0]! - killedAtMs)
      into.detection.push(adoptedAtMs - killedAtMs)
      into.after.push(result.resumedAtMs[0]! - adoptedAtMs)
      await serving.process.exit()
      standby.process.lines.length = 0
      ;[serving, standby] = [standby, await spawnServer(`k${spawned++}`)]
    }
    for (let i = 0; i < sigkills; i++)
      await killRound(
        `SIGKILL ${i}`,
        async (service, midway) => {
          const result = await download("small", service, midway)
          if (result.bytes !== takeoverObjectBytes)
            throw new Error(`SIGKILL ${i}: ${result.bytes} bytes`)
          return result
        },
        killed,
      )
    // The same for two-way sessions: the client writing and reading when its server dies.
    for (let i = 0; i < duplexSigkills; i++)
      await killRound(
        `duplex SIGKILL ${i}`,
        (service, midway) => duplexSession(service, takeoverObjectBytes, midway),
        duplexKilled,
      )
  } finally {
    JsonLinesProcess.killAll()
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

const rangeGaps: Array<number> = []
for (let i = 0; i < takeovers; i++) rangeGaps.push(await rangeTakeover())
await Effect.runPromise(Scope.close(storeScope, Exit.void))

const ratios = session.checkpointed.map((value, i) => value / session.baseline[i]!)
const duplexRatios = duplex.checkpointed.map((value, i) => value / duplex.plain[i]!)
const spread = (values: ReadonlyArray<number>, digits = 1) =>
  `${median(values).toFixed(digits)} (${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)})`
const rows: Array<[string, string]> = [
  [
    `checkpointed transfer, default policy (MiB/s, ${runs} runs of 128 MiB)`,
    spread(session.checkpointed),
  ],
  ["same transfer without checkpoints: baseline (MiB/s)", spread(session.baseline)],
  ["ratio checkpointed / baseline (target >= 0.8)", spread(ratios, 2)],
  ["plain node:net streaming, no session layer (MiB/s)", spread(tcp)],
  ...memberTransports.map((transport): [string, string] => [
    `bundle member over ${transport}, checkpointed (MiB/s, ${runs} runs of 16 MiB)`,
    spread(members[transport]!),
  ]),
  [
    `takeover gap after detection p50 / p99 (ms, ${takeovers} takeovers)`,
    `${percentile(gaps, 50).toFixed(1)} / ${percentile(gaps, 99).toFixed(1)}`,
  ],
  [
    `SIGKILLed server process: SIGKILL to first resumed byte p50 / p99 (ms, ${sigkills} kills)`,
    `${percentile(killed.total, 50).toFixed(1)} / ${percentile(killed.total, 99).toFixed(1)}`,
  ],
  [
    `  of which detection (its ${leaseMs} ms store lease lapsing, to the standby's adoption) p50 / p99`,
    `${percentile(killed.detection, 50).toFixed(1)} / ${percentile(killed.detection, 99).toFixed(1)}`,
  ],
  [
    "  after detection (to the first resumed byte; target p99 < 100) p50 / p99",
    `${percentile(killed.after, 50).toFixed(1)} / ${percentile(killed.after, 99).toFixed(1)}`,
  ],
  [
    `HTTP Range reconnect gap p50 / p99 (ms, ${takeovers} cuts)`,
    `${percentile(rangeGaps, 50).toFixed(1)} / ${percentile(rangeGaps, 99).toFixed(1)}`,
  ],
  [
    `two-way session (DuplexSession echo), checkpointed both ways (MiB/s each way, ${runs} runs of 32 MiB)`,
    spread(duplex.checkpointed),
  ],
  ["same echo over plain node:net, no session layer: baseline (MiB/s)", spread(duplex.plain)],
  ["ratio two-way session / plain echo", spread(duplexRatios, 2)],
  [
    `two-way session, SIGKILLed server: SIGKILL to first answer byte p50 / p99 (ms, ${duplexSigkills} kills)`,
    `${percentile(duplexKilled.total, 50).toFixed(1)} / ${percentile(duplexKilled.total, 99).toFixed(1)}`,
  ],
  [
    `  of which detection (its ${leaseMs} ms store lease lapsing) p50 / p99`,
    `${percentile(duplexKilled.detection, 50).toFixed(1)} / ${percentile(duplexKilled.detection, 99).toFixed(1)}`,
  ],
  [
    "  after detection (to the first answer byte) p50 / p99",
    `${percentile(duplexKilled.after, 50).toFixed(1)} / ${percentile(duplexKilled.after, 99).toFixed(1)}`,
  ],
]
const width = Math.max(...rows.map(([label]) => label.length))
for (const [label, value] of rows) console.log(`${label.padEnd(width)}  ${value}`)
console.log(
  JSON.stringify({
    benchmark: "checkpoint/session",
    runs,
    objectBytes,
    checkpointedMiBps: median(session.checkpointed),
    baselineMiBps: median(session.baseline),
    ratio: median(ratios),
    ratioMin: Math.min(...ratios),
    ratioMax: Math.max(...ratios),
    plainTcpMiBps: median(tcp),
    bundleMemberMiBps: Object.fromEntries(
      memberTransports.map((transport) => [transport, median(members[transport]!)]),
    ),
    takeovers,
    gapAfterDetectionP50Ms: percentile(gaps, 50),
    gapAfterDetectionP99Ms: percentile(gaps, 99),
    sigkills,
    leaseMs,
    sigkillGapP50Ms: percentile(killed.total, 50),
    sigkillGapP99Ms: percentile(killed.total, 99),
    sigkillDetectionP50Ms: percentile(killed.detection, 50),
    sigkillDetectionP99Ms: percentile(killed.detection, 99),
    sigkillAfterDetectionP50Ms: percentile(killed.after, 50),
    sigkillAfterDetectionP99Ms: percentile(killed.after, 99),
    rangeGapP50Ms: percentile(rangeGaps, 50),
    rangeGapP99Ms: percentile(rangeGaps, 99),
    duplexBytes,
    duplexMiBps: median(duplex.checkpointed),
    duplexPlainMiBps: median(duplex.plain),
    duplexRatio: median(duplexRatios),
    duplexRatioMin: Math.min(...duplexRatios),
    duplexRatioMax: Math.max(...duplexRatios),
    duplexSigkills,
    duplexSigkillGapP50Ms: percentile(duplexKilled.total, 50),
    duplexSigkillGapP99Ms: percentile(duplexKilled.total, 99),
    duplexSigkillDetectionP50Ms: percentile(duplexKilled.detection, 50),
    duplexSigkillDetectionP99Ms: percentile(duplexKilled.detection, 99),
    duplexSigkillAfterDetectionP50Ms: percentile(duplexKilled.after, 50),
    duplexSigkillAfterDetectionP99Ms: percentile(duplexKilled.after, 99),
    // Every sample (ms), for the docs' distribution charts.
    samples: {
      sigkillGapMs: killed.total,
      gapAfterDetectionMs: gaps,
      rangeGapMs: rangeGaps,
      duplexSigkillGapMs: duplexKilled.total,
    },
  }),
)
process.exit(0)
