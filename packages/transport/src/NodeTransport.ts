/**
 * The `Transport` service over real sockets (node:net): TCP on IPv4 and IPv6, Unix domain
 * sockets, and Linux abstract sockets (`unix://@name`).
 *
 * @since 0.1.0
 */

import * as crypto from "node:crypto"
import type { BigIntStats } from "node:fs"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import {
  type Cause,
  Clock,
  Effect,
  Exit,
  Layer,
  Metric,
  Queue,
  Result,
  Scope,
  Stream,
} from "effect"
import * as Address from "./Address.ts"
import type { Connection } from "./Connection.ts"
import * as connection from "./internal/connection.ts"
import type { RandomBytes } from "./internal/link.ts"
import * as NodeLink from "./internal/nodeLink.ts"
import * as Metrics from "./Metrics.ts"
import { type ConnectionOptions, decode, type ResolvedOptions } from "./Options.ts"
import { type Listener, Transport } from "./Transport.ts"
import { ConnectError, ListenError } from "./TransportError.ts"

/** Nonces for the cluster-key handshake come from the OS's CSPRNG. */
const randomBytes: RandomBytes = (size) =>
  Effect.sync(() => new Uint8Array(crypto.randomBytes(size)))

/** Handshakes in progress on one listener; past this, new sockets are dropped at once. */
const maxPendingHandshakes = 1024

/** A socket dropped at once because `maxPendingHandshakes` were in progress. */
const overloaded = Metric.withAttributes(Metrics.handshakes, {
  side: "server",
  outcome: "Overloaded",
})

/** Accepted connections not yet taken from `Listener.connections`. */
const acceptedQueueCapacity = 256

/** Time allowed to probe whether an existing Unix socket file has a live listener. */
const unixProbeTimeoutMs = 1_000

/** The path node expects: abstract names start with a NUL byte. */
const socketPath = (address: Address.Unix): string =>
  address.abstract ? `\0${address.path}` : address.path

const connectReason = (code: string | undefined): ConnectError["reason"] => {
  switch (code) {
    case "ECONNREFUSED":
    case "ENOENT":
      return "Refused"
    case "ETIMEDOUT":
      return "Timeout"
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return "Unreachable"
    case "ECONNRESET":
    case "EPIPE":
      return "Closed"
    default:
      return "Other"
  }
}

const ignoreError = (): void => {}

/** A Unix peer that did not bind a name (every client socket) has no address of its own. */
const unnamedUnix: Address.Unix = Address.unix("")

const tcpAddress = (host: string | undefined, port: number | undefined): Address.Tcp | undefined =>
  host === undefined || port === undefined ? undefined : Address.tcp(host, port)

/** Local and remote addresses of a connected socket, in Understudy's terms. */
const socketAddresses = (
  socket: net.Socket,
  fallback: { readonly local: Address.StreamAddress; readonly remote: Address.StreamAddress },
): { readonly local: Address.StreamAddress; readonly remote: Address.StreamAddress } => ({
  local: tcpAddress(socket.localAddress, socket.localPort) ?? fallback.local,
  remote: tcpAddress(socket.remoteAddress, socket.remotePort) ?? fallback.remote,
})

/**
 * Releases a socket the connection core is done with: it has already sent its FIN (or
 * the peer's), so give the kernel up to `linger` to finish the exchange, then destroy.
 */
const releaseSocket = (socket: net.Socket, lingerMs: number): Effect.Effect<void> =>
  // Already gone (the usual case once the peer has closed): no linger timer to race.
  Effect.suspend(() => (socket.destroyed ? Effect.void : lingerThenDestroy(socket, lingerMs)))

const lingerThenDestroy = (socket: net.Socket, lingerMs: number): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const onClose = () => resume(Effect.void)
    socket.once("close", onClose)
    if (!socket.writableEnded) socket.end()
    return Effect.sync(() => socket.off("close", onClose))
  }).pipe(
    Effect.timeoutOption(lingerMs),
    Effect.ensuring(Effect.sync(() => socket.destroy())),
    Effect.asVoid,
  )

/** Whether something accepts connections on a Unix socket path right now. */
const probeUnix = (path: string): Effect.Effect<"Listening" | "Refused" | "Other"> =>
  Effect.callback<"Listening" | "Refused" | "Other">((resume) => {
    const probe = net.connect({ path })
    probe.once("connect", () => {
      probe.destroy()
      resume(Effect.succeed("Listening"))
    })
    probe.once("error", (error) => {
      probe.destroy()
      resume(Effect.succeed(NodeLink.errorCode(error) === "ECONNREFUSED" ? "Refused" : "Other"))
    })
    return Effect.sync(() => probe.destroy())
  }).pipe(
    // A listener too busy to accept within the bound is still a listener.
    Effect.timeoutOption(unixProbeTimeoutMs),
    Effect.map((result) => (result._tag === "Some" ? result.value : "Listening")),
  )

/**
 * How long to wait for another listener's stale-file check on the same file: its probe
 * takes at most `unixProbeTimeoutMs`, and a listener too slow to answer that counts as live.
 */
const staleLockWaitMs = 1_500

/** Pause between attempts to take a stale-file lock someone else holds. */
const staleLockRetryMs = 5

/**
 * The lock that serializes stale-file checks of one socket file across processes: an
 * abstract socket (the kernel frees it when its owner dies, so a killed owner never leaves
 * it held) named after the file's identity — device, inode and change time to the
 * nanosecond, as `lstat` gives them. Every process that found this same file takes the same
 * lock; one that found another file (a new socket bound meanwhile) takes another. Only who
 * may `lstat` the file can name the lock, so in a directory only its owner may enter (as
 * port-election's default), no other user can hold it to stop the clean-up.
 */
const staleLockName = (stat: BigIntStats): string =>
  `\0understudy-stale-socket-${crypto
    .createHash("sha256")
    .update(`${stat.dev}:${stat.ino}:${stat.ctimeNs}`)
    .digest("hex")}`

/** One attempt to bind the lock's abstract name: the server if taken, undefined if busy. */
const tryLock = (name: string): Effect.Effect<net.Server | undefined> =>
  Effect.callback<net.Server | undefined>((resume) => {
    const server = net.createServer()
    server.once("error", () => {
      server.close()
      resume(Effect.succeed(undefined))
    })
    server.once("listening", () => resume(Effect.succeed(server)))
    server.listen({ path: name, exclusive: true })
  })

/**
 * Holds the lock `name` in the scope: true once taken, false if another listener held it
 * for `staleLockWaitMs`.
 */
const staleLock = (name: string): Effect.Effect<boolean, never, Scope.Scope> =>
  Effect.gen(function* () {
    const deadline = (yield* Clock.currentTimeMillis) + staleLockWaitMs
    while (true) {
      const server = yield* Effect.acquireRelease(tryLock(name), (server) =>
        Effect.sync(() => server?.close()),
      )
      if (server !== undefined) return true
      if ((yield* Clock.currentTimeMillis) >= deadline) return false
      yield* Effect.sleep(staleLockRetryMs)
    }
  })

const lstatOrUndefined = (path: string) =>
  Effect.promise(() => fs.lstat(path, { bigint: true }).catch(() => undefined))

const sameFile = (a: BigIntStats, b: BigIntStats): boolean =>
  a.dev === b.dev && a.ino === b.ino && a.ctimeNs === b.ctimeNs

/**
 * Removes a Unix socket file left behind by a process that died without closing its
 * listener. Only a socket file (never a regular file or directory) and only when
 * connecting to it is refused, so a live listener's path is never taken over.
 *
 * Two listeners may find the same stale file at once: each would see it refused, and the
 * slower one would unlink the socket the faster one had just bound there. So the check and
 * the unlink run under a lock per file (`staleLockName`), and only the file probed (same
 * device, inode and change time) is unlinked: under the lock nobody else removes it, and
 * nobody can bind the path while it is there. If the lock stays busy, nothing is removed
 * and listening fails with `AddressInUse`, naming the lock.
 */
const removeStaleSocketFile = (path: string, formatted: string): Effect.Effect<void, ListenError> =>
  Effect.gen(function* () {
    const seen = yield* lstatOrUndefined(path)
    // No file: nothing to remove, and the exclusive bind settles any race for the path.
    if (seen === undefined || !seen.isSocket()) return
    const lock = staleLockName(seen)
    if (!(yield* staleLock(lock))) {
      return yield* new ListenError({
        address: formatted,
        reason: "AddressInUse",
        detail: `a socket file is there, and the lock on removing it if stale (abstract socket @${lock.slice(1)}) stayed busy for ${staleLockWaitMs} ms`,
      })
    }
    const stat = yield* lstatOrUndefined(path)
    if (stat === undefined || !sameFile(stat, seen)) return
    const probe = yield* probeUnix(path)
    if (probe !== "Refused") return
    const again = yield* lstatOrUndefined(path)
    if (again === undefined || !sameFile(again, seen)) return
    yield* Effect.promise(() => fs.unlink(path).catch(() => undefined))
    yield* Effect.logDebug("removed stale unix socket file").pipe(Effect.annotateLogs({ path }))
  }).pipe(Effect.scoped)

/** Binds exclusively; the server is closed (and stops accepting) when the scope closes. */
const acquireServer = (
  address: Address.StreamAddress,
  onConnection: (socket: net.Socket) => void,
): Effect.Effect<net.Server, ListenError, Scope.Scope> => {
  const formatted = Address.format(address)
  const bind = Effect.callback<net.Server, ListenError>((resume) => {
    const server = net.createServer({ noDelay: true, pauseOnConnect: true })
    const onError = (error: Error) => {
      server.close()
      resume(
        Effect.fail(
          new ListenError({
            address: formatted,
            reason: NodeLink.listenReason(NodeLink.errorCode(error)),
            detail: NodeLink.describeError(error),
          }),
        ),
      )
    }
    server.once("error", onError)
    server.once("listening", () => {
      server.off("error", onError)
      // Later errors on a listening server (EMFILE on accept) must not crash the process.
      server.on("error", () => {})
      server.on("connection", onConnection)
      resume(Effect.succeed(server))
    })
    // `exclusive`: never share the port with cluster workers or SO_REUSEPORT.
    if (address._tag === "Tcp") {
      server.listen({ host: address.host, port: address.port, exclusive: true })
    } else {
      server.listen({ path: socketPath(address), exclusive: true })
    }
    return Effect.sync(() => server.close())
  })
  return Effect.acquireRelease(bind, (server) =>
    Effect.sync(() => {
      server.off("connection", onConnection)
      // Stops accepting at once; node unlinks the Unix socket file it created.
      server.close()
    }),
  )
}

const boundAddress = (
  server: net.Server,
  requested: Address.StreamAddress,
): Address.StreamAddress => {
  const bound = server.address()
  if (requested._tag === "Tcp" && bound !== null && typeof bound === "object") {
    return Address.tcp(bound.address, bound.port)
  }
  return requested
}

const listen = <A>(
  address: Address.StreamAddress,
  options: ConnectionOptions<A>,
): Effect.Effect<Listener<A>, ListenError, Scope.Scope> =>
  Effect.gen(function* () {
    // A bad option fails before anything is bound.
    const decoded = decode(options)
    if (Result.isFailure(decoded)) {
      return yield* new ListenError({
        address: Address.format(address),
        reason: "Other",
        detail: decoded.failure,
      })
    }
    const resolved = decoded.success
    const listenerScope = yield* Effect.scope
    if (address._tag === "Unix" && !address.abstract) {
      yield* removeStaleSocketFile(address.path, Address.format(address))
    }
    const sockets = yield* Queue.unbounded<net.Socket>()
    const accepted = yield* Queue.bounded<Connection<A>, Cause.Done>(acceptedQueueCapacity)
    // Registered before the server, so it runs after it: the stream ends once nothing
    // more can arrive.
    yield* Effect.addFinalizer(() => Queue.end(accepted))
    // Every accepted socket until its connection is over. When the listener closes, any
    // socket still here never reached (or never finished) its handshake — it may have
    // been dequeued just as the connections' scope closed — so it is destroyed, and its
    // peer learns at once instead of waiting out its handshake time-out.
    const unfinished = new Set<net.Socket>()
    let pendingHandshakes = 0
    const context = yield* Effect.context<never>()
    let closing = false
    const server = yield* acquireServer(address, (socket) => {
      // Past this point nothing takes sockets from the queue any more.
      if (closing || pendingHandshakes >= maxPendingHandshakes) {
        if (!closing) overloaded.updateUnsafe(1, context)
        socket.destroy()
        return
      }
      pendingHandshakes++
      unfinished.add(socket)
      Queue.offerUnsafe(sockets, socket)
    })
    const local = boundAddress(server, address)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const socket of unfinished) socket.destroy()
        unfinished.clear()
      }),
    )
    // Each connection gets a child scope of this one; closing the listener closes them all,
    // in parallel so that one slow linger does not hold up the others.
    const connectionsScope = yield* Scope.fork(listenerScope, "parallel")

    const handle = (socket: net.Socket) =>
      Effect.gen(function* () {
        const scope = yield* Scope.fork(connectionsScope)
        const link = NodeLink.make(socket, socketAddresses(socket, { local, remote: unnamedUnix }))
        const peer = Address.format(link.remote)
        yield* Scope.addFinalizer(
          scope,
          Effect.ensuring(
            releaseSocket(socket, resolved.lingerMs),
            Effect.sync(() => unfinished.delete(socket)),
          ),
        )
        const result = yield* connection
          .make(link, { role: "server", options: resolved, randomBytes, peer })
          .pipe(
            Scope.provide(scope),
            Effect.ensuring(Effect.sync(() => pendingHandshakes--)),
            Effect.result,
          )
        if (result._tag === "Failure") {
          link.destroy()
          yield* Scope.close(scope, Exit.void)
          yield* Effect.logWarning("dropped a peer that failed the handshake").pipe(
            Effect.annotateLogs({
              listener: Address.format(local),
              peer,
              error: result.failure.message,
            }),
          )
          return
        }
        const conn = result.success
        yield* Queue.offer(accepted, conn)
        // Frees the socket as soon as the connection is over, not only at listener close.
        yield* conn.closed
        yield* Scope.close(scope, Exit.void)
      })

    yield* Queue.take(sockets).pipe(
      Effect.flatMap((socket) => Effect.forkIn(handle(socket), connectionsScope)),
      Effect.forever,
      Effect.forkScoped,
    )

    // Stops accepting; node frees the address at once (and unlinks a Unix socket file).
    const unbind = Effect.sync(() => {
      closing = true
      server.close()
    })
    // Registered last, so it runs first: stop accepting before anything else is torn down.
    // Finalizers may yield to the event loop between them, and a socket accepted then would
    // otherwise sit unread until the peer's handshake times out.
    yield* Effect.addFinalizer(() => unbind)

    return { address: local, connections: Stream.fromQueue(accepted), unbind }
  })

const connectSocket = (
  address: Address.StreamAddress,
  resolved: ResolvedOptions<unknown>,
): Effect.Effect<net.Socket, ConnectError> => {
  const formatted = Address.format(address)
  return Effect.callback<net.Socket, ConnectError>((resume) => {
    const socket =
      address._tag === "Tcp"
        ? net.connect({ host: address.host, port: address.port, noDelay: true })
        : net.connect({ path: socketPath(address) })
    // Between the connect and the link taking the socket over, or when it is released
    // without one (its connection's scope closed first), nothing else listens for 'error',
    // and an unhandled one would bring the whole process down; the link reports errors
    // from the moment it has the socket.
    socket.on("error", ignoreError)
    const onError = (error: Error) => {
      socket.destroy()
      resume(
        Effect.fail(
          new ConnectError({
            address: formatted,
            reason: connectReason(NodeLink.errorCode(error)),
            detail: NodeLink.describeError(error),
          }),
        ),
      )
    }
    socket.once("error", onError)
    socket.once("connect", () => {
      socket.off("error", onError)
      resume(Effect.succeed(socket))
    })
    return Effect.sync(() => socket.destroy())
  }).pipe(
    Effect.timeoutOrElse({
      duration: resolved.handshakeTimeoutMs,
      orElse: () =>
        Effect.fail(
          new ConnectError({
            address: formatted,
            reason: "Timeout",
            detail: `no connection within ${resolved.handshakeTimeoutMs} ms`,
          }),
        ),
    }),
  )
}

const connect = <A>(address: Address.StreamAddress, options: ConnectionOptions<A>) =>
  Effect.gen(function* () {
    // A bad option fails before anything is dialled.
    const decoded = decode(options)
    if (Result.isFailure(decoded)) {
      return yield* new ConnectError({
        address: Address.format(address),
        reason: "Other",
        detail: decoded.failure,
      })
    }
    const resolved = decoded.success
    const socket = yield* Effect.acquireRelease(
      connectSocket(address, resolved as ResolvedOptions<unknown>),
      (socket) => releaseSocket(socket, resolved.lingerMs),
    )
    const link = NodeLink.make(
      socket,
      socketAddresses(socket, { local: unnamedUnix, remote: address }),
    )
    return yield* connection
      .make(link, { role: "client", options: resolved, randomBytes, peer: Address.format(address) })
      .pipe(Effect.onError(() => Effect.sync(() => link.destroy())))
  })

/**
 * Builds the real-socket `Transport`.
 *
 * Listening is exclusive: a second listener on the same TCP port or abstract name fails
 * with `ListenError` `AddressInUse`. For a Unix socket path that already exists, the file
 * is removed only when it is a socket and connecting to it is refused (its owner died
 * without cleaning up); a path with a live listener gives `AddressInUse`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Transport["Service"]> = Effect.succeed(
  Transport.of({ listen, connect }),
)

/**
 * `Transport` over node:net.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Address, Codec, NodeTransport, Transport } from "@understudy/transport"
 *
 * const program = Effect.gen(function* () {
 *   const transport = yield* Transport.Transport
 *   const conn = yield* transport.connect(Address.tcp("127.0.0.1", 7000), { codec: Codec.bytes })
 *   yield* conn.send(new Uint8Array([1, 2, 3]))
 * }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer))
 * ```
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Transport> = Layer.effect(Transport, make)
