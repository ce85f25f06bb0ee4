/**
 * Writes/s and reads/s through the library with durability on, against etcd doing the same
 * puts and linearizable gets in the same run.
 *
 * - The library: three `ServerGroup` servers in this process on loopback UDP (real sockets,
 *   keyed datagrams), each with its write-ahead log (`walFile`, fsynced before any answer)
 *   in a temporary directory; a key-value state machine. Writes are `submit`s to the master;
 *   reads are `read` (linearizable: read index, a majority round per read) then a lookup.
 * - etcd: a three-member cluster the bench starts (`/usr/bin/etcd`, loopback, free ports,
 *   temporary data directories, default raft timings; every member stopped at the end),
 *   through `EtcdStore` (the etcd3 client): `put`, and `get` (linearizable, etcd's default).
 *
 * `BENCH_NO_WAL=1` runs the library without its logs (durability off), for comparison.
 *
 * Both with `BENCH_CLIENTS` concurrent clients (default 16), each doing its operations one
 * after another, `BENCH_OPS` writes then as many reads (default 3,000), after a warm-up of
 * 200 of each. Reported: operations/s, p50 / p99 latency, and the ratios library / etcd
 * (above 1: the library is faster). The library's clients call the master in-process while
 * etcd's go through gRPC: the ratio includes that hop.
 *
 * @since 0.1.0
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { Authentication } from "@understudy/machine"
import { MemoryStore, NameServer, Store } from "@understudy/store"
import { EtcdStore } from "@understudy/store/etcd"
import { Ports } from "@understudy/testkit"
import { Address, NodeDatagram } from "@understudy/transport"
import { Context, Effect, Exit, HashMap, Layer, Option, Schema, Scope } from "effect"
import * as ServerGroup from "../src/ServerGroup.ts"

type State = HashMap.HashMap<string, string>
type Req = { readonly key: string; readonly value: string }

const clients = Math.max(1, Number(process.env.BENCH_CLIENTS ?? 16))
const ops = Math.max(100, Number(process.env.BENCH_OPS ?? 3_000))
const warmup = 200
const etcdBinary = "/usr/bin/etcd"

/** Latencies in ms, sorted; the phase's wall time. */
interface Phase {
  readonly latencies: ReadonlyArray<number>
  readonly wallMs: number
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!

/** `count` operations by `clients` concurrent clients, each one at a time. */
const phase = async (count: number, op: (i: number) => Promise<void>): Promise<Phase> => {
  const latencies: Array<number> = []
  let next = 0
  const started = performance.now()
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let i = next++; i < count; i = next++) {
        const t0 = performance.now()
        await op(i)
        latencies.push(performance.now() - t0)
      }
    }),
  )
  return { latencies: latencies.sort((a, b) => a - b), wallMs: performance.now() - started }
}

interface Measured {
  readonly writes: Phase
  readonly reads: Phase
}

/** The library: three durable servers in this process. */
const library = async (): Promise<Measured> => {
  const dir = mkdtempSync(join(tmpdir(), "understudy-bench-wal-"))
  const scope = Effect.runSync(Scope.make())
  try {
    const ids = ["s1", "s2", "s3"]
    const ports = await Ports.freeUdpPorts(ids.length)
    const addresses = Object.fromEntries(
      ids.map((id, i) => [id, Address.udp("127.0.0.1", ports[i]!)]),
    )
    const authentication = Authentication.keyed(new Uint8Array(randomBytes(32)))
    const context = await Effect.runPromise(
      Layer.build(
        NameServer.layer.pipe(Layer.provide(MemoryStore.layer), Layer.merge(NodeDatagram.layer)),
      ).pipe(Scope.provide(scope)),
    )
    const servers = new Map<string, ServerGroup.ServerGroup<State, Req, null>>()
    for (const id of ids) {
      const server = await Effect.runPromise(
        ServerGroup.make<State, Req, null>({
          group: "bench",
          self: id,
          servers: ids.map((s, i) => ({ id: s, capacity: { cpu: 10 - i, bandwidthMbps: 100 } })),
          addresses,
          authentication,
          request: Schema.Struct({ key: Schema.String, value: Schema.String }),
          initial: HashMap.empty<string, string>(),
          apply: (state, request) => [HashMap.set(state, request.key, request.value), null],
          detectionPeriod: 50,
          inquiryTimeout: 250,
          baseDelay: 100,
          floorDelay: 40,
          registrationTtl: 1_500,
          submitTimeout: 5_000,
          queuedSubmitsMax: 10_000,
          reads: "linearizable",
          ...(process.env.BENCH_NO_WAL === "1" ? {} : { walFile: join(dir, `${id}.wal`) }),
        }).pipe(Effect.provideContext(context), Scope.provide(scope)),
      )
      servers.set(id, server)
    }
    // Settled: every server follows one serving master at one epoch (bounded: 20 s).
    let master: ServerGroup.ServerGroup<State, Req, null> | undefined
    for (let i = 0; i < 400 && master === undefined; i++) {
      const all = await Promise.all([...servers.values()].map((s) => Effect.runPromise(s.status)))
      const masters = all.filter((s) => s.role === "master" && s.serving && s.ready)
      if (
        masters.length === 1 &&
        all.every((s) => s.master === masters[0]!.self && s.epoch === masters[0]!.epoch)
      ) {
        master = servers.get(masters[0]!.self)
      } else await sleep(50)
    }
    if (master === undefined) throw new Error("no settled master within 20 s")
    let m = master
    /** Runs `op` on the master, following `NotMaster` to the one it names (bounded). */
    const onMaster = async <A>(
      op: (server: ServerGroup.ServerGroup<State, Req, null>) => Effect.Effect<A, unknown>,
    ): Promise<A> => {
      for (let attempt = 0; ; attempt++) {
        const result = await Effect.runPromise(Effect.result(op(m)))
        if (result._tag === "Success") return result.success
        const error = result.failure as { _tag?: string; master?: string | null }
        const named = error.master == null ? undefined : servers.get(error.master)
        if (attempt >= 50 || error._tag !== "NotMaster") throw result.failure
        if (named !== undefined) m = named
        else await sleep(20)
      }
    }
    let requestId = 0
    const write = (i: number) => {
      const submission = {
        clientId: `c${i % clients}`,
        requestId: ++requestId,
        request: { key: `k${i % 1_000}`, value: `v${i}` },
      }
      return onMaster((server) => server.submit(submission)).then(() => undefined)
    }
    const read = (i: number) =>
      onMaster((server) => server.read).then((state) => {
        if (Option.isNone(HashMap.get(state, `k${i % 1_000}`))) throw new Error("a read missed")
      })
    await phase(warmup, write)
    await phase(warmup, read)
    return { writes: await phase(ops, write), reads: await phase(ops, read) }
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Ends a child: SIGTERM, then SIGKILL after 3 s. */
const stop = async (child: ChildProcess) => {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  child.kill("SIGTERM")
  const timer = setTimeout(() => child.kill("SIGKILL"), 3_000)
  await exited
  clearTimeout(timer)
}

const running = new Set<ChildProcess>()
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL")
})

/** A three-member etcd cluster on loopback; `stop` ends it and removes its data. */
const startEtcdCluster = async () => {
  if (!existsSync(etcdBinary)) throw new Error("etcd is not installed (/usr/bin/etcd)")
  const names = ["e1", "e2", "e3"]
  const members: Array<{ name: string; client: string; peer: string; dir: string }> = []
  for (const name of names) {
    members.push({
      name,
      client: `http://127.0.0.1:${await Ports.freeTcpPort()}`,
      peer: `http://127.0.0.1:${await Ports.freeTcpPort()}`,
      dir: mkdtempSync(join(tmpdir(), `understudy-bench-etcd-${name}-`)),
    })
  }
  const cluster = members.map((m) => `${m.name}=${m.peer}`).join(",")
  const children = members.map((m) => {
    const child = spawn(
      etcdBinary,
      [
        `--name=${m.name}`,
        `--data-dir=${m.dir}`,
        `--listen-client-urls=${m.client}`,
        `--advertise-client-urls=${m.client}`,
        `--listen-peer-urls=${m.peer}`,
        `--initial-advertise-peer-urls=${m.peer}`,
        `--initial-cluster=${cluster}`,
        "--initial-cluster-state=new",
        "--initial-cluster-token=understudy-bench",
        "--logger=zap",
        "--log-level=error",
      ],
      { stdio: ["ignore", "ignore", "ignore"] },
    )
    running.add(child)
    child.once("exit", () => running.delete(child))
    return child
  })
  const stopAll = async () => {
    await Promise.all(children.map(stop))
    for (const m of members) rmSync(m.dir, { recursive: true, force: true })
  }
  const healthy = async (url: string) => {
    try {
      const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) })
      return ((await response.json()) as { health?: string }).health === "true"
    } catch {
      return false
    }
  }
  for (let i = 0; i < 300; i++) {
    if ((await Promise.all(members.map((m) => healthy(m.client)))).every(Boolean)) {
      return { endpoints: members.map((m) => m.client), stop: stopAll }
    }
    await sleep(100)
  }
  await stopAll()
  throw new Error("the etcd cluster was not healthy within 30 s")
}

/** etcd: the same puts and linearizable gets. */
const etcd = async (): Promise<Measured> => {
  const cluster = await startEtcdCluster()
  const scope = Effect.runSync(Scope.make())
  try {
    const context = await Effect.runPromise(
      Layer.build(
        EtcdStore.layer({
          endpoints: cluster.endpoints,
          prefix: "/bench/",
          requestTimeout: 5_000,
        }),
      ).pipe(Scope.provide(scope)),
    )
    const store = Context.get(context, Store.Store)
    const encoder = new TextEncoder()
    const write = (i: number) =>
      Effect.runPromise(store.put(`k${i % 1_000}`, encoder.encode(`v${i}`))).then(() => undefined)
    const read = (i: number) =>
      Effect.runPromise(store.get(`k${i % 1_000}`)).then((found) => {
        if (Option.isNone(found)) throw new Error("a read missed")
      })
    await phase(warmup, write)
    await phase(warmup, read)
    return { writes: await phase(ops, write), reads: await phase(ops, read) }
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await cluster.stop()
  }
}

const perSecond = (p: Phase) => (p.latencies.length * 1_000) / p.wallMs
const round = (value: number, digits = 0) =>
  Number.isFinite(value) ? Math.round(value * 10 ** digits) / 10 ** digits : null

/** @since 0.1.0 */
export const heading = `\nthroughput: ${clients} concurrent clients, ${ops} writes then ${ops} reads each side; 3 servers in this process (one event loop) / 3 etcd member processes, loopback; ${process.env.BENCH_NO_WAL === "1" ? "the library WITHOUT its logs (BENCH_NO_WAL=1)" : "durable: fsync before answering"}
side       op        ops/s    p50 ms   p99 ms`

/** Runs both sides, one after the other. @since 0.1.0 */
export const run = async (): Promise<{
  rows: Array<string>
  figures: Record<string, number | null>
}> => {
  const lib = await library()
  // Without etcd installed the library's side is still measured, and the ratios are absent.
  const et = existsSync(etcdBinary) ? await etcd() : undefined
  const rows: Array<string> = []
  const figures: Record<string, number | null> = {}
  const sides: Array<readonly [string, Measured]> = [["library", lib]]
  if (et !== undefined) sides.push(["etcd", et])
  for (const [side, measured] of sides) {
    for (const [op, p] of [
      ["writes", measured.writes],
      ["reads", measured.reads],
    ] as const) {
      const p50 = percentile(p.latencies, 0.5)
      const p99 = percentile(p.latencies, 0.99)
      figures[`${side}${op === "writes" ? "Writes" : "Reads"}PerSecond`] = round(perSecond(p))
      figures[`${side}${op === "writes" ? "Write" : "Read"}MsP50`] = round(p50, 2)
      figures[`${side}${op === "writes" ? "Write" : "Read"}MsP99`] = round(p99, 2)
      rows.push(
        `${side.padEnd(10)} ${op.padEnd(7)} ${String(round(perSecond(p))).padStart(8)} ${String(round(p50, 2)).padStart(9)} ${String(round(p99, 2)).padStart(8)}`,
      )
    }
  }
  if (et === undefined) {
    rows.push(`etcd: not installed (${etcdBinary}): no comparison`)
    return { rows, figures }
  }
  figures.writesPerSecondRatioLibraryToEtcd = round(perSecond(lib.writes) / perSecond(et.writes), 3)
  figures.readsPerSecondRatioLibraryToEtcd = round(perSecond(lib.reads) / perSecond(et.reads), 3)
  rows.push(
    `ratio library/etcd: writes/s ${figures.writesPerSecondRatioLibraryToEtcd}, reads/s ${figures.readsPerSecondRatioLibraryToEtcd}`,
  )
  return { rows, figures }
}
