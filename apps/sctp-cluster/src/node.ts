/**
 * `sctp-cluster node`: one node of the two-node SCTP endpoint (`Cluster.make` on real UDP
 * and TCP sockets), with its status endpoint. It prints one JSON line per fact on stdout:
 * `started` once bound, `cluster` per cluster event (link up / down, takeover, final
 * synchronisation), `role` when its role or link changes, `association` when an
 * association's state, primary path or a path's confirmation / activity changes,
 * `impending-failure` after SIGTERM's final synchronisation, `handed-over` after a planned
 * handover (`POST /handover`, then the node exits), and `stopping`.
 *
 * @since 0.1.0
 */
import * as http from "node:http"
import { Cluster, Replication } from "@understudy/multihome"
import { RemoteStore, Store } from "@understudy/store"
import { Address, NodeDatagram, NodeTransport } from "@understudy/transport"
import {
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Layer,
  Option,
  Redacted,
  type Scope,
  Stream,
} from "effect"
import type { NodeInvocation, StoreLocation } from "./cli.ts"
import { clusterKeyOf, exitCode, line, type StopReason } from "./common.ts"
import * as Handover from "./handover.ts"
import type { StatusReport } from "./report.ts"
import * as Takeover from "./takeover.ts"

/** How often the node looks for association and role changes to print. */
const watchEveryMs = 50

/** SIGTERM's final synchronisation gives up after this long (the process is going away). */
const impendingFailureBoundMs = 3_000

/** The status endpoint answers within this long or closes the request. */
const statusTimeoutMs = 5_000

const reply = (response: http.ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body)
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  })
  response.end(text)
}

/**
 * `POST /handover` on the status endpoint: the planned handover, `verify` checking each
 * request (the cluster key's signature, see `handover.ts`; undefined with `--insecure`),
 * `done` called once the answer is written.
 *
 * @since 0.1.0
 */
export interface HandOverRoute {
  readonly run: Effect.Effect<Cluster.HandOverReport, Cluster.ClusterError>
  readonly verify: ((header: string | undefined, nowMs: number) => string | undefined) | undefined
  readonly done: (report: Cluster.HandOverReport) => void
}

/** Answers `POST /handover` (see {@link HandOverRoute}), checked at `nowMs`. */
const serveHandOver = (
  route: HandOverRoute,
  request: http.IncomingMessage,
  response: http.ServerResponse,
  nowMs: number,
) => {
  request.resume()
  const header = request.headers[Handover.authHeader]
  const refused = route.verify?.(typeof header === "string" ? header : undefined, nowMs)
  if (refused !== undefined) return reply(response, 401, { error: "Unauthorized", detail: refused })
  void Effect.runPromise(
    Effect.match(route.run, {
      onFailure: (error) =>
        reply(response, 409, { error: "HandOverRefused", detail: error.detail }),
      onSuccess: (report) => {
        response.once("finish", () => route.done(report))
        reply(response, 200, report)
      },
    }),
  )
}

/**
 * Serves `GET /status` (and, with `handOver`, `POST /handover`) on `address` (TCP or a unix
 * socket) until the scope closes; gives back the address actually bound (the port when 0
 * was asked).
 *
 * @since 0.1.0
 */
export const serveStatus = (
  address: Address.StreamAddress,
  report: Effect.Effect<StatusReport>,
  handOver?: HandOverRoute,
): Effect.Effect<Address.StreamAddress, Cluster.ClusterError, Scope.Scope> =>
  Effect.gen(function* () {
    // The handler runs outside any Effect: it reads the time of the Effect's clock.
    const clock = yield* Clock.Clock
    const server = http.createServer((request, response) => {
      const path = new URL(request.url ?? "/", "http://localhost").pathname
      if (request.method === "POST" && path === "/handover" && handOver !== undefined) {
        return serveHandOver(handOver, request, response, clock.currentTimeMillisUnsafe())
      }
      if (request.method !== "GET" || path !== "/status") {
        reply(response, 404, { error: "NotFound", path })
        return
      }
      void Effect.runPromise(
        report.pipe(
          Effect.timeoutOption(Duration.millis(statusTimeoutMs)),
          Effect.map((value) =>
            Option.isSome(value)
              ? reply(response, 200, value.value)
              : reply(response, 503, { error: "Busy" }),
          ),
        ),
      )
    })
    server.keepAliveTimeout = 1_000
    yield* Effect.acquireRelease(
      Effect.callback<void, Error>((resume) => {
        server.once("error", (error) => resume(Effect.fail(error)))
        if (address._tag === "Tcp")
          server.listen(address.port, address.host, () => resume(Effect.void))
        else
          server.listen(address.abstract ? `\0${address.path}` : address.path, () =>
            resume(Effect.void),
          )
      }),
      () =>
        Effect.sync(() => {
          server.closeAllConnections()
          server.close()
        }),
    )
    if (address._tag === "Unix") return address
    const bound = server.address()
    return Address.tcp(address.host, typeof bound === "object" && bound !== null ? bound.port : 0)
  }).pipe(
    Effect.mapError(
      (error) =>
        new Cluster.ClusterError({
          detail: `status endpoint ${Address.format(address)}: ${error.message}`,
        }),
    ),
  )

/** What `association` lines compare: a change in any of these is printed. */
const associationSummary = (association: Cluster.Status["associations"][number]) => ({
  id: association.id,
  state: association.state,
  primary: association.primary,
  peerPort: association.peerPort,
  paths: association.paths.map((path) => ({
    host: path.host,
    udpPort: path.udpPort,
    confirmed: path.confirmed,
    active: path.active,
  })),
})

/**
 * The store `--store` names: a `sctp-cluster store` over the transport, keyed with the
 * cluster key, or etcd (its gRPC client loaded only then; etcd is secured by its own means).
 */
const storeLayer = (
  location: StoreLocation,
  clusterKey: Effect.Success<ReturnType<typeof clusterKeyOf>>,
): Layer.Layer<Store.Store> =>
  location._tag === "Etcd"
    ? Layer.unwrap(
        Effect.promise(() => import("@understudy/store/etcd")).pipe(
          Effect.map(({ EtcdStore }) =>
            // Constant options: they cannot be refused.
            EtcdStore.layer({ endpoints: [location.endpoint], requestTimeout: 1_000 }).pipe(
              Layer.orDie,
            ),
          ),
        ),
      )
    : RemoteStore.layer({
        address: location,
        requestTimeout: 1_000,
        ...(clusterKey !== undefined ? { clusterKey } : {}),
      }).pipe(Layer.provide(NodeTransport.layer), Layer.orDie)

/** Runs the node until SIGTERM / SIGINT. @since 0.1.0 */
export const node = (
  invocation: NodeInvocation,
  stop: Deferred.Deferred<StopReason>,
): Effect.Effect<number, unknown> =>
  Effect.gen(function* () {
    const ownAddress = invocation.addresses[invocation.role === "primary" ? 0 : 1]
    const bind = Address.udp(ownAddress, invocation.udpPort)
    const clusterKey = yield* clusterKeyOf(invocation.clusterKeyFile)
    const sockets = yield* Layer.build(Layer.mergeAll(NodeTransport.layer, NodeDatagram.layer))
    let store: Store.Store["Service"] | undefined
    if (invocation.store !== undefined) {
      const storeContext = yield* Layer.build(storeLayer(invocation.store, clusterKey))
      store = Context.get(storeContext, Store.Store)
    }
    const cluster = yield* Cluster.make({
      role: invocation.role,
      bind,
      port: invocation.port,
      addresses: invocation.addresses,
      link: invocation.link,
      ...(invocation.standbyLink !== undefined ? { standbyLink: invocation.standbyLink } : {}),
      policy: invocation.policy,
      service: Cluster.services[invocation.service],
      ...(store !== undefined && invocation.policy._tag === "StateNode" ? { store } : {}),
      ...(store !== undefined && invocation.fenceLeaseMs !== undefined
        ? { fence: { store, lease: Duration.millis(invocation.fenceLeaseMs) } }
        : {}),
      ...(clusterKey !== undefined ? { clusterKey } : { insecure: true }),
      failover: invocation.failover,
      ...(invocation.takeoverInterface !== undefined
        ? { addressClaim: Takeover.onInterface(invocation.takeoverInterface) }
        : {}),
    }).pipe(Effect.provideContext(sockets))

    const identity: StatusReport["node"] = {
      startedAs: invocation.role,
      pid: process.pid,
      bind: Address.format(cluster.endpoint.address),
      addresses: invocation.addresses,
      port: invocation.port,
      service: invocation.service,
      link: Address.format(invocation.link),
      failover: invocation.failover,
      takeoverInterface: invocation.takeoverInterface,
    }
    const report = Effect.map(cluster.status, (status) => ({ ...status, node: identity }))
    const statusAddress = yield* serveStatus(invocation.status, report, {
      run: cluster.handOver,
      verify: clusterKey === undefined ? undefined : Handover.verifier(Redacted.value(clusterKey)),
      // Handed over for good: the node exits (restarted, it is the new standby).
      done: (handedOver) => {
        line({ t: "handed-over", ...handedOver })
        Deferred.doneUnsafe(stop, Effect.succeed("HandedOver"))
      },
    })

    yield* Effect.forkScoped(
      Stream.runForEach(cluster.events, (event) =>
        Effect.sync(() => line({ t: "cluster", ...event })),
      ),
    )

    // Role, link and associations are polled and printed when they change: the events
    // stream does not carry path confirmations, and a subscription may start after the
    // first link-up.
    let lastRole = ""
    const lastAssociations = new Map<number, string>()
    const watch = Effect.gen(function* () {
      const status = yield* cluster.status
      const role = `${status.role}/${status.link}`
      if (role !== lastRole) {
        lastRole = role
        line({ t: "role", role: status.role, link: status.link })
      }
      const seen = new Set<number>()
      for (const association of status.associations) {
        seen.add(association.id)
        const summary = associationSummary(association)
        const key = JSON.stringify(summary)
        if (lastAssociations.get(association.id) !== key) {
          lastAssociations.set(association.id, key)
          line({ t: "association", ...summary })
        }
      }
      for (const id of [...lastAssociations.keys()]) {
        if (!seen.has(id)) {
          lastAssociations.delete(id)
          line({ t: "association", id, state: "Gone" })
        }
      }
    })
    yield* Effect.forkScoped(
      Effect.forever(Effect.andThen(watch, Effect.sleep(Duration.millis(watchEveryMs)))),
    )

    line({
      t: "started",
      role: invocation.role,
      pid: process.pid,
      bind: identity.bind,
      addresses: invocation.addresses,
      port: invocation.port,
      service: invocation.service,
      policy: Replication.formatPolicy(invocation.policy),
      failover: invocation.failover,
      ...(invocation.takeoverInterface !== undefined
        ? { takeoverInterface: invocation.takeoverInterface }
        : {}),
      link: identity.link,
      status: Address.format(statusAddress),
    })

    const reason = yield* Deferred.await(stop)
    if (reason === "SIGTERM") {
      // Claims 5–6: a failure announced in advance gets one final synchronisation.
      const synced = yield* cluster.impendingFailure.pipe(
        Effect.timeoutOption(Duration.millis(impendingFailureBoundMs)),
      )
      const status = yield* cluster.status
      line({
        t: "impending-failure",
        synced: Option.isSome(synced),
        shipped: status.replication.shipped,
        acknowledged: status.replication.acknowledged,
      })
    }
    line({ t: "stopping", reason })
    return exitCode.ok
  }).pipe(Effect.scoped)
