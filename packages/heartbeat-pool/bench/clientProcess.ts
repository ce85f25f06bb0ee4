/**
 * A few hundred clients of the benchmark's real-process case in one OS process, all starting
 * at the same server, of the `kinds` asked: `count` pool clients (a `Client.run` each, with a
 * socket each; `BENCH_CLIENT_GROUP=1`: one `ClientGroup`, one UDP socket and one connected to
 * each server a walk goes to, not the default: 500 of them in a group walked off a live
 * leader hundreds of times in 10 s where as many `Client.run`s walked not once, see
 * ClientGroup's batching; started one at a time, 64 a heartbeat interval) and/or `count` clients of the baseline,
 * each keeping its own TTL lease on the embedded store of that server (a `RemoteStore`
 * connection each, a keep-alive every heartbeat interval, answered within
 * one interval or the store counts as gone) and, once it is gone, re-acquiring a lease on the
 * next server's store in the priority list. `BENCH_REPORT_UNREACHABLE=0` turns the pool
 * clients' `reportUnreachable` off (detection by missed replies only), to compare. The options come as one JSON argument (the pool
 * secret in hex in `POOL_SECRET_HEX`); it prints `{"t":"ready"}` once every client started,
 * then one line per client event: `{"t":"Granted"|"Reattached"|"Lost"|"Denied", "kind":
 * "pool"|"lease", "client", "server", "term", "wallMs"}`. With each pool client's
 * `Reattached` comes `{"t":"trace","client","steps":[...]}`: its steps of the last few
 * intervals (see `Trace`), so the bench can tell where a re-attachment's time went; and
 * `{"t":"stall","wallMs","ms"}` whenever this process's event loop ran late (`stalls.ts`).
 */
import { RemoteStore } from "@understudy/store"
import { type Address, NodeDatagram, NodeTransport } from "@understudy/transport"
import { Deferred, Effect, Layer, Redacted, Semaphore, Stream } from "effect"
import * as Client from "../src/Client.ts"
import * as ClientGroup from "../src/ClientGroup.ts"
import { watchStalls } from "./stalls.ts"

export interface Options {
  /** The kinds of client this process runs (one, unless the bench shares processes). */
  readonly kinds: ReadonlyArray<"pool" | "lease">
  readonly from: number
  readonly count: number
  /** Index in `servers` where every client starts. */
  readonly first: number
  readonly servers: ReadonlyArray<{
    readonly id: string
    readonly client: Address.Udp
    readonly store: Address.Tcp
  }>
  readonly heartbeatMs: number
  readonly leaseMs: number
}

const options = JSON.parse(process.argv[2]!) as Options
const secret = Redacted.make(new Uint8Array(Buffer.from(process.env.POOL_SECRET_HEX!, "hex")))
const print = (line: Record<string, unknown>) =>
  Effect.sync(() => void process.stdout.write(`${JSON.stringify(line)}\n`))

/**
 * One step of a client's trace: `[wallMs, what, ...detail]`: `send` (to, tag, seq), `reply`
 * (from, tag, seq), `timeout` (ms late: its own process's lag), `grace` (a late timer given
 * one more wait), `walk` (from, to, why: `unreachable` on a port unreachable, `timed` after
 * `missLimit` unanswered messages).
 */
export type Trace = [number, string, ...Array<string | number>]

/** The steps kept per client: a few intervals' worth around a failover. */
const traceSteps = 48

const tracer = (steps: Array<Trace>) => (info: Client.StepInfo) =>
  Effect.sync(() => {
    const { before, after, input, outputs, nowMs } = info
    if (before === undefined) return
    if (input._tag === "TimerFired" && before.waitUntilMs !== undefined)
      steps.push([
        nowMs,
        after.graced && !before.graced ? "grace" : "timeout",
        nowMs - before.waitUntilMs,
      ])
    else if (input._tag === "Receive" && "seq" in input.message)
      steps.push([nowMs, "reply", input.from, input.message._tag, input.message.seq])
    if (before.target !== after.target)
      steps.push([
        nowMs,
        "walk",
        before.target,
        after.target,
        input._tag === "Command" ? "unreachable" : "timed",
      ])
    for (const output of outputs)
      if (output._tag === "Send" && "seq" in output.message)
        steps.push([nowMs, "send", output.to, output.message._tag, output.message.seq])
    if (steps.length > traceSteps) steps.splice(0, steps.length - traceSteps)
  })

const servers = options.servers.map((server) => ({ id: server.id, address: server.client }))
const reportUnreachable = process.env.BENCH_REPORT_UNREACHABLE !== "0"

/** Starts one pool client: in `group`, or (no group) with a socket of its own. */
const poolClient = (group: ClientGroup.Group | undefined, index: number) =>
  Effect.gen(function* () {
    const client = `pool-${index}`
    const steps: Array<Trace> = []
    const member: ClientGroup.Member = {
      id: client,
      product: "cad",
      heartbeatInterval: options.heartbeatMs,
      firstServer: options.first,
      ...(process.env.BENCH_RETRY_MS ? { retryInterval: Number(process.env.BENCH_RETRY_MS) } : {}),
      onStep: tracer(steps),
    }
    const running =
      group === undefined
        ? yield* Client.run({
            ...member,
            bind: { _tag: "Udp", host: "127.0.0.1", port: 0 },
            servers,
            poolSecret: secret,
            reportUnreachable,
          })
        : yield* group.add(member)
    yield* Stream.runForEach(running.events, (event) =>
      event._tag === "Released"
        ? Effect.void
        : (event._tag === "Reattached"
            ? print({ t: "trace", client, steps: steps.splice(0) })
            : Effect.void
          ).pipe(
            Effect.andThen(
              print({
                t: event._tag,
                kind: "pool",
                client,
                server: event.server,
                term: event.term,
                ...("reason" in event ? { reason: event.reason } : {}),
                wallMs: event.atMs,
              }),
            ),
          ),
    ).pipe(Effect.forkScoped)
  })

/** Pool clients started per heartbeat interval in this process, one at a time. */
const poolStartPerInterval = 64

const held = new TextEncoder().encode("held")

/**
 * The baseline: a TTL lease of its own, kept alive every interval; a keep-alive unanswered
 * within 2 intervals means the store is gone (the pool client walks on after 2 heartbeats
 * unanswered, the second half an interval after the first), and the lease is re-acquired at
 * the next store in priority order. Returns once the first lease is held; the rest runs in
 * the caller's scope.
 */
const leaseClient = (index: number) =>
  Effect.gen(function* () {
    const client = `lease-${index}`
    const first = yield* Deferred.make<void>()
    let granted = false
    const hold = (server: Options["servers"][number]) =>
      Effect.scoped(
        Effect.gen(function* () {
          // Connecting and acquiring may take long on a loaded machine; transport pings off:
          // the lease keep-alives are this client's liveness check.
          const store = yield* RemoteStore.make({
            address: server.store,
            requestTimeout: options.leaseMs,
            keepAlive: false,
          })
          const lease = yield* store.grantLease(options.leaseMs)
          yield* store.put(`seat/${client}`, held, { lease: lease.id })
          yield* print({
            t: granted ? "Reattached" : "Granted",
            kind: "lease",
            client,
            server: server.id,
            term: 0,
            wallMs: Date.now(),
          })
          granted = true
          yield* Deferred.succeed(first, undefined)
          yield* Effect.forever(
            Effect.sleep(options.heartbeatMs).pipe(
              Effect.andThen(store.keepAlive(lease.id)),
              Effect.timeout(options.heartbeatMs * 2),
            ),
          )
        }),
      ).pipe(Effect.exit)
    yield* Effect.forkScoped(
      Effect.gen(function* () {
        let target = options.first
        // Bounded: a run needs a few; each attempt takes at least an interval.
        for (let attempt = 0; attempt < 1_000; attempt++) {
          yield* hold(options.servers[target]!)
          // Gone (or it refused): the next store; one that never held asks its first again.
          if (granted) target = (target + 1) % options.servers.length
        }
      }),
    )
    yield* Deferred.await(first)
  })

watchStalls()
await Effect.runPromise(
  Effect.gen(function* () {
    const indices = Array.from({ length: options.count }, (_, i) => options.from + i)
    // Paced, `poolStartPerInterval` a heartbeat interval: a loaded leader that takes a
    // thousand requests at once falls behind its heartbeats and loses its followers. One at a
    // time, evenly: a client heartbeats in the phase it started in, and batches an interval
    // apart would put hundreds of heartbeats in the same few milliseconds.
    const group =
      options.kinds.includes("pool") && process.env.BENCH_CLIENT_GROUP === "1"
        ? yield* ClientGroup.run({
            bind: { _tag: "Udp", host: "127.0.0.1", port: 0 },
            servers,
            poolSecret: secret,
            reportUnreachable,
          })
        : undefined
    if (options.kinds.includes("pool"))
      for (const index of indices) {
        yield* poolClient(group, index)
        yield* Effect.sleep(options.heartbeatMs / poolStartPerInterval)
      }
    // The first leases 16 at a time: a thousand connections at once time out on a loaded machine.
    const connecting = yield* Semaphore.make(16)
    if (options.kinds.includes("lease"))
      for (const index of indices)
        yield* Effect.forkScoped(connecting.withPermits(1)(leaseClient(index)))
    yield* print({ t: "ready" })
    yield* Effect.never
  }).pipe(Effect.scoped, Effect.provide(Layer.merge(NodeDatagram.layer, NodeTransport.layer))),
)
