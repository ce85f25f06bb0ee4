/**
 * The pool for code that does not use Effect: `createServer`, `createClient` and
 * `createClientGroup` (many clients in one process) return
 * Promises of objects that are `EventEmitter`s (one event name per pool or client event:
 * `Granted`, `Reattached`, `Lost`, `Denied`, `BecameLeader`, ...), over real UDP sockets.
 *
 * @example
 * ```ts
 * import { createClient } from "@understudy/heartbeat-pool"
 *
 * const client = await createClient({ id: "cad-7", product: "cad", poolSecret, bind, servers })
 * client.on("Granted", (event) => console.log("seat from", event.server))
 * client.on("Lost", () => process.exit(1))
 * // ... later
 * await client.release()
 * await client.close()
 * ```
 * @since 0.1.0
 */
import { EventEmitter } from "node:events"
import { type Datagram, NodeDatagram, Observability } from "@understudy/transport"
import { Effect, Exit, Scope, Stream } from "effect"
import * as Client from "./Client.ts"
import * as ClientGroup from "./ClientGroup.ts"
import type * as ClientMachine from "./ClientMachine.ts"
import type * as Machine from "./Machine.ts"
import * as Server from "./Server.ts"

/** @since 0.1.0 @category models */
export interface PoolClient extends EventEmitter {
  /** Resolves with the client's state (phase, server, lease end). */
  state(): Promise<ClientMachine.State>
  /** Gives the seats back. */
  release(): Promise<void>
  close(): Promise<void>
}

/**
 * Many clients in one process (`ClientGroup`): one socket and one timer for them all.
 *
 * @since 0.1.0
 * @category models
 */
export interface PoolClientGroup {
  /** Starts a client in the group: it requests its seats at once. */
  add(member: ClientGroup.Member): Promise<PoolClient>
  /** Stops every client of the group (releasing nothing: leases just expire). */
  close(): Promise<void>
}

/** @since 0.1.0 @category models */
export interface PoolServer extends EventEmitter {
  state(): Promise<Machine.State>
  close(): Promise<void>
}

/**
 * Runs `make` in a new scope, on Node's datagrams, with the caller's logger and layers; the
 * scope is closed if `make` fails. The caller wires the events (`emitEvents`).
 */
const start = async <A>(
  make: Effect.Effect<A, unknown, Scope.Scope | Datagram.Datagram>,
  observability: Observability.FacadeOptions,
): Promise<{
  readonly running: A
  readonly scope: Scope.Closeable
  readonly runtime: Observability.FacadeRuntime
}> => {
  const scope = Effect.runSync(Scope.make())
  // The caller's logger and layers (tracer, metrics), for every effect of this client or server.
  const runtime = await Observability.facadeRuntime(observability, scope)
  const running = await runtime.runPromise(
    make.pipe(
      Effect.provide(NodeDatagram.layer),
      Scope.provide(scope),
      Effect.onError(() => Scope.close(scope, Exit.void)),
    ),
  )
  return { running, scope, runtime }
}

/** An emitter of `running`'s events, one event name per tag, until `scope` closes. */
const emitEvents = (
  running: { readonly events: Stream.Stream<{ readonly _tag: string }> },
  scope: Scope.Scope,
  runtime: Observability.FacadeRuntime,
): EventEmitter => {
  const emitter = new EventEmitter()
  runtime.runFork(
    Stream.runForEach(running.events, (event) =>
      Effect.sync(() => void emitter.emit(event._tag, event)),
    ).pipe(Scope.provide(scope)),
  )
  return emitter
}

/**
 * Starts a client: it requests its seats at once and keeps them until `release`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createClient = async (
  options: Client.Options & Observability.FacadeOptions,
): Promise<PoolClient> => {
  const { logger, layer, ...clientOptions } = options
  const { running, scope, runtime } = await start(Client.run(clientOptions), { logger, layer })
  return Object.assign(emitEvents(running, scope, runtime), {
    state: () => runtime.runPromise(running.state),
    release: () => runtime.runPromise(running.release),
    close: () => runtime.runPromise(Scope.close(scope, Exit.void)),
  })
}

/**
 * Starts a group of clients sharing one socket, for a process that holds many seats; `add`
 * starts each client.
 *
 * @example
 * ```ts
 * import { createClientGroup } from "@understudy/heartbeat-pool"
 *
 * const group = await createClientGroup({ bind, servers, poolSecret })
 * const client = await group.add({ id: "seat-1", product: "cad" })
 * client.on("Granted", (event) => console.log("seat from", event.server))
 * await group.close()
 * ```
 * @since 0.1.0
 * @category constructors
 */
export const createClientGroup = async (
  options: ClientGroup.Options & Observability.FacadeOptions,
): Promise<PoolClientGroup> => {
  const { logger, layer, ...groupOptions } = options
  const started = await start(ClientGroup.run(groupOptions), { logger, layer })
  const { running: group, scope, runtime } = started
  return {
    add: async (member) => {
      const running = await runtime.runPromise(group.add(member))
      return Object.assign(emitEvents(running, scope, runtime), {
        state: () => runtime.runPromise(running.state),
        release: () => runtime.runPromise(running.release),
        close: () => runtime.runPromise(running.stop),
      })
    },
    close: () => runtime.runPromise(Scope.close(scope, Exit.void)),
  }
}

/**
 * Starts one server of a pool.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createServer = async (
  options: Server.Options & Observability.FacadeOptions,
): Promise<PoolServer> => {
  const { logger, layer, ...serverOptions } = options
  const { running, scope, runtime } = await start(Server.run(serverOptions), { logger, layer })
  return Object.assign(emitEvents(running, scope, runtime), {
    state: () => runtime.runPromise(running.state),
    close: () => runtime.runPromise(Scope.close(scope, Exit.void)),
  })
}
