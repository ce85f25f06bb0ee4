/**
 * What the clients' closed-port reports cost in sockets: `node bench/sockets.ts N [servers]`
 * binds N endpoints in this process as N clients would (`Client.run` binds one each), first
 * plain, then with `reportUnreachable` and `prepare` of a socket connected to each of
 * `servers` (default 3) destinations (the bound: `Client.run` prepares only the next server
 * of its walk, one at a time, each time the target or the list changes). Then N clients in one
 * `ClientGroup` (one socket, and one connected to the server each client's walk would go to,
 * once for the group), and N clients each run by `Client.run`: keyed, 500 ms heartbeats,
 * started at the first server, which absorbs their requests, so they run (each asks again at
 * its retry pace, 2 a second) but get no answer. Prints, for each, the wall and CPU time, the
 * heap and RSS growth and the file descriptors open, and for the clients the CPU of a second
 * of running (the drivers' cost per message, the protocol being the same), as a JSON line.
 * The process's descriptor limit (`ulimit -n`) bounds N * (servers + 1) for all but the
 * group, whose descriptors do not grow with N (`BENCH_SOCKETS_GROUP_ONLY=1`: the group
 * alone, for an N above that limit).
 */
import { readdirSync } from "node:fs"
import { type Address, ClusterKey, Datagram, NodeDatagram } from "@understudy/transport"
import { Effect, Exit, Scope } from "effect"
import * as Client from "../src/Client.ts"
import * as ClientGroup from "../src/ClientGroup.ts"

const clients = Number(process.argv[2] ?? 1_000)
const serverCount = Number(process.argv[3] ?? 3)
const gc = (globalThis as { gc?: () => void }).gc
const fds = () => readdirSync("/proc/self/fd").length
const any: Address.Udp = { _tag: "Udp", host: "127.0.0.1", port: 0 }

/** This process now, after a collection: what `grown` measures from. */
const sample = () => {
  gc?.()
  return {
    memory: process.memoryUsage(),
    fds: fds(),
    cpu: process.cpuUsage(),
    atMs: performance.now(),
  }
}

/** What grew since `before`, per client where it is a size. */
const grown = (before: ReturnType<typeof sample>) => {
  const wallMs = performance.now() - before.atMs
  const used = process.cpuUsage(before.cpu)
  gc?.()
  const after = process.memoryUsage()
  return {
    wallMs: Math.round(wallMs),
    cpuMs: Math.round((used.user + used.system) / 1_000),
    heapKiBPerClient: Math.round((after.heapUsed - before.memory.heapUsed) / 1024 / clients),
    rssKiBPerClient: Math.round((after.rss - before.memory.rss) / 1024 / clients),
    fdsOpened: fds() - before.fds,
  }
}

/** The servers: bound sockets that only absorb (nothing is sent back), in `scope`. */
const absorbing = (scope: Scope.Scope) =>
  Effect.gen(function* () {
    const datagram = yield* Datagram.Datagram
    const servers: Array<{ readonly id: string; readonly address: Address.Udp }> = []
    for (let index = 0; index < serverCount; index++) {
      const endpoint = yield* datagram.bind(any).pipe(Scope.provide(scope))
      servers.push({ id: `s${index + 1}`, address: endpoint.address })
    }
    return servers
  })

/** N endpoints bound as N `Client.run`s would, with or without their closed-port sockets. */
const measure = (report: boolean) =>
  Effect.gen(function* () {
    const datagram = yield* Datagram.Datagram
    const scope = yield* Scope.make()
    const servers = yield* absorbing(scope)
    const before = sample()
    let connected = 0
    for (let index = 0; index < clients; index++) {
      const endpoint = yield* datagram
        .bind(any, { reportUnreachable: report })
        .pipe(Scope.provide(scope))
      if (endpoint.prepare !== undefined)
        for (const server of servers) yield* endpoint.prepare(server.address)
      if (report) connected += serverCount
    }
    const line = {
      clients,
      servers: serverCount,
      reportUnreachable: report,
      ...grown(before),
      connectedAsked: connected,
    }
    yield* Scope.close(scope, Exit.void)
    return line
  })

/** N clients in one group, or each by `Client.run`, asking absorbing servers. */
const measureClients = (layout: "group" | "single") =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const servers = yield* absorbing(scope)
    const poolSecret = ClusterKey.generate()
    const before = sample()
    const group =
      layout === "group"
        ? yield* ClientGroup.run({ bind: any, servers, poolSecret }).pipe(Scope.provide(scope))
        : undefined
    for (let index = 0; index < clients; index++) {
      const member = { id: `c${index}`, product: "cad", heartbeatInterval: 500 }
      if (group !== undefined) yield* group.add(member)
      else
        yield* Client.run({ ...member, bind: any, servers, poolSecret }).pipe(Scope.provide(scope))
    }
    const started = grown(before)
    // A second of the clients running: each asked again twice.
    const running = process.cpuUsage()
    yield* Effect.sleep(1_000)
    const ran = process.cpuUsage(running)
    const line = {
      clients,
      servers: serverCount,
      layout,
      ...started,
      cpuMsPerSecondRunning: Math.round((ran.user + ran.system) / 1_000),
      // Connected sockets are made by forked fibers, and on the first send: after that second.
      fdsOpenedRunning: fds() - before.fds,
    }
    yield* Scope.close(scope, Exit.void)
    return line
  })

const program = Effect.gen(function* () {
  if (process.env.BENCH_SOCKETS_GROUP_ONLY !== "1") {
    console.log(JSON.stringify(yield* measure(false)))
    console.log(JSON.stringify(yield* measure(true)))
    console.log(JSON.stringify(yield* measureClients("single")))
  }
  console.log(JSON.stringify(yield* measureClients("group")))
}).pipe(Effect.provide(NodeDatagram.layer))
await Effect.runPromise(program)
