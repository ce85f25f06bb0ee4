/**
 * What the clients' closed-port reports cost in sockets: `node bench/sockets.ts N [servers]`
 * binds N endpoints in this process as N clients would (`Client.run` binds one each), first
 * plain, then with `reportUnreachable` and `prepare` of a socket connected to each of
 * `servers` (default 3) destinations, as `Client.run` does at start. Prints, for each, the
 * wall and CPU time, the heap and RSS growth and the file descriptors open, as a JSON line.
 * The process's descriptor limit (`ulimit -n`) bounds N * (servers + 1).
 */
import { readdirSync } from "node:fs"
import { type Address, Datagram, NodeDatagram } from "@understudy/transport"
import { Effect, Scope } from "effect"

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

const program = Effect.gen(function* () {
  console.log(JSON.stringify(yield* measure(false)))
  console.log(JSON.stringify(yield* measure(true)))
}).pipe(Effect.provide(NodeDatagram.layer))
await Effect.runPromise(program)
