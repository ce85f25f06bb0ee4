/**
 * What the clients' closed-port reports cost in sockets: `node bench/sockets.ts N [servers]`
 * binds N endpoints in this process as N clients would (`Client.run` binds one each), first
 * plain, then with `reportUnreachable` and `prepare` of a socket connected to each of
 * `servers` (default 3) destinations, as `Client.run` does at start. Then N clients in one
 * `ClientGroup` (one socket, and one connected to the server each client's walk would go to,
 * once for the group), keyed, started at the first server, which absorbs their requests:
 * they run (each asks again at its retry pace) but get no answer. Prints, for each, the wall
 * and CPU time, the heap and RSS growth and the file descriptors open, as a JSON line. The
 * process's descriptor limit (`ulimit -n`) bounds N * (servers + 1) for the first two; the
 * group's descriptors do not grow with N (`BENCH_SOCKETS_GROUP_ONLY=1`: the group alone, for
 * an N above that limit).
 */
import { readdirSync } from "node:fs"
import { type Address, ClusterKey, Datagram, NodeDatagram } from "@understudy/transport"
import { Effect, Exit, Scope } from "effect"
import * as ClientGroup from "../src/ClientGroup.ts"

const clients = Number(process.argv[2] ?? 1_000)
const serverCount = Number(process.argv[3] ?? 3)
const gc = (globalThis as { gc?: () => void }).gc
const fds = () => readdirSync("/proc/self/fd").length

const measure = (report: boolean) =>
  Effect.gen(function* () {
    const datagram = yield* Datagram.Datagram
    const scope = yield* Scope.make()
    // The servers: bound sockets that only absorb (nothing is sent here).
    const servers: Array<Address.Udp> = []
    for (let index = 0; index < serverCount; index++)
      servers.push(
        (yield* datagram
          .bind({ _tag: "Udp", host: "127.0.0.1", port: 0 })
          .pipe(Scope.provide(scope))).address,
      )
    gc?.()
    const heap = process.memoryUsage()
    const fdsBefore = fds()
    const cpu = process.cpuUsage()
    const started = performance.now()
    let connected = 0
    for (let index = 0; index < clients; index++) {
      const endpoint = yield* datagram
        .bind({ _tag: "Udp", host: "127.0.0.1", port: 0 }, { reportUnreachable: report })
        .pipe(Scope.provide(scope))
      if (endpoint.prepare !== undefined)
        for (const server of servers) yield* endpoint.prepare(server)
      if (report) connected += serverCount
    }
    const wallMs = performance.now() - started
    const used = process.cpuUsage(cpu)
    gc?.()
    const after = process.memoryUsage()
    const line = {
      clients,
      servers: serverCount,
      reportUnreachable: report,
      wallMs: Math.round(wallMs),
      cpuMs: Math.round((used.user + used.system) / 1_000),
      heapKiBPerClient: Math.round((after.heapUsed - heap.heapUsed) / 1024 / clients),
      rssKiBPerClient: Math.round((after.rss - heap.rss) / 1024 / clients),
      fdsOpened: fds() - fdsBefore,
      connectedAsked: connected,
    }
    yield* Scope.close(scope, undefined as never)
    return line
  })

/** `clients` clients in one group, each sending its requests to absorbing servers. */
const measureGroup = Effect.gen(function* () {
  const datagram = yield* Datagram.Datagram
  const scope = yield* Scope.make()
  const servers: Array<{ readonly id: string; readonly address: Address.Udp }> = []
  for (let index = 0; index < serverCount; index++) {
    const endpoint = yield* datagram
      .bind({ _tag: "Udp", host: "127.0.0.1", port: 0 })
      .pipe(Scope.provide(scope))
    servers.push({ id: `s${index + 1}`, address: endpoint.address })
  }
  gc?.()
  const heap = process.memoryUsage()
  const fdsBefore = fds()
  const cpu = process.cpuUsage()
  const started = performance.now()
  const group = yield* ClientGroup.run({
    bind: { _tag: "Udp", host: "127.0.0.1", port: 0 },
    servers,
    poolSecret: ClusterKey.generate(),
  }).pipe(Scope.provide(scope))
  for (let index = 0; index < clients; index++)
    yield* group.add({ id: `c${index}`, product: "cad", heartbeatInterval: 500 })
  const wallMs = performance.now() - started
  const used = process.cpuUsage(cpu)
  // Two heartbeat intervals of the group running: the requests asked again.
  const runningCpu = process.cpuUsage()
  yield* Effect.sleep(1_000)
  const ranCpu = process.cpuUsage(runningCpu)
  gc?.()
  const after = process.memoryUsage()
  const line = {
    clients,
    servers: serverCount,
    group: true,
    wallMs: Math.round(wallMs),
    cpuMs: Math.round((used.user + used.system) / 1_000),
    cpuMsPerSecondRunning: Math.round((ranCpu.user + ranCpu.system) / 1_000),
    heapKiBPerClient: Math.round((after.heapUsed - heap.heapUsed) / 1024 / clients),
    rssKiBPerClient: Math.round((after.rss - heap.rss) / 1024 / clients),
    fdsOpened: fds() - fdsBefore,
  }
  yield* Scope.close(scope, Exit.void)
  return line
})

const program = Effect.gen(function* () {
  if (process.env.BENCH_SOCKETS_GROUP_ONLY !== "1") {
    console.log(JSON.stringify(yield* measure(false)))
    console.log(JSON.stringify(yield* measure(true)))
  }
  console.log(JSON.stringify(yield* measureGroup))
}).pipe(Effect.provide(NodeDatagram.layer))
await Effect.runPromise(program)
