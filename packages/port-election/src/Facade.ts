/**
 * The port election for code that does not use Effect: Promises and an EventEmitter.
 *
 * @example
 * ```ts
 * import { createInstance } from "@understudy/port-election"
 *
 * const instance = await createInstance({ program: "my-cli", address: "unix://@my-cli" })
 * instance.on("Elected", () => console.log("I supervise now"))
 * const release = await instance.acquire("build-slot", { limit: 2 })
 * // ... do the work ...
 * await release()
 * await instance.close()
 * ```
 * @since 0.1.0
 */
import { EventEmitter } from "node:events"
import { Address, NodeTransport, Observability } from "@understudy/transport"
import { Effect, Exit, Scope, Stream } from "effect"
import * as Election from "./Election.ts"

/** @since 0.1.0 @category models */
export interface InstanceOptions
  extends Omit<Election.ElectionOptions, "address">,
    Observability.FacadeOptions {
  /** An address URL (`tcp://127.0.0.1:47100`, `unix://@name`) or a parsed address. */
  readonly address: string | Address.StreamAddress
}

/** @since 0.1.0 @category models */
export interface Instance extends EventEmitter {
  readonly instanceId: string
  role(): Election.Role
  members(): Promise<ReadonlyArray<Election.Member>>
  request(operation: string, payload: unknown): Promise<unknown>
  serve(operation: string, handler: (payload: unknown, from: string) => unknown): void
  onCommand(name: string, handler: (payload: unknown, from: string) => unknown): void
  command(
    target: string | "all",
    name: string,
    payload: unknown,
  ): Promise<
    ReadonlyArray<{ readonly instanceId: string; readonly ok: boolean; readonly payload: unknown }>
  >
  /** Resolves with a function that releases the permit. */
  acquire(resource: string, options?: { readonly limit?: number }): Promise<() => Promise<void>>
  /** Leaves the election; a supervisor hands over cleanly. */
  close(): Promise<void>
}

const toHandler =
  (handler: (payload: unknown, from: string) => unknown): Election.Handler =>
  (payload, from) =>
    Effect.tryPromise(async () => handler(payload, from))

/**
 * Joins the election. Events are emitted under their tag (`Elected`, `BecameSubordinate`,
 * `MemberJoined`, `MemberLeft`, `SupervisorLost`, `PermitLost`, `Failed`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const createInstance = async (options: InstanceOptions): Promise<Instance> => {
  const address =
    typeof options.address === "string" ? Address.parseStream(options.address) : options.address
  if (address instanceof Address.InvalidAddress) throw address
  const scope = Effect.runSync(Scope.make())
  // The caller's logger and layers (tracer, metrics), for every effect of this instance.
  const runtime = await Observability.facadeRuntime(options, scope)
  const run = runtime.runPromise
  const emitter = new EventEmitter()
  const election = await run(
    Election.make({ ...options, address }).pipe(
      Scope.provide(scope),
      Effect.provide(NodeTransport.layer),
      Effect.onError(() => Scope.close(scope, Exit.void)),
    ),
  )
  runtime.runFork(
    Stream.runForEach(election.events, (event) =>
      Effect.sync(() => void emitter.emit(event._tag, event)),
    ).pipe(Scope.provide(scope)),
  )
  const instance = Object.assign(emitter, {
    instanceId: election.instanceId,
    role: () => runtime.runSync(election.role),
    members: () => run(election.members),
    request: (operation: string, payload: unknown) => run(election.request(operation, payload)),
    serve: (operation: string, handler: (payload: unknown, from: string) => unknown) =>
      runtime.runSync(election.serve(operation, toHandler(handler))),
    onCommand: (name: string, handler: (payload: unknown, from: string) => unknown) =>
      runtime.runSync(election.onCommand(name, toHandler(handler))),
    command: (target: string, name: string, payload: unknown) =>
      run(election.command(target, name, payload)),
    acquire: async (resource: string, acquireOptions?: { readonly limit?: number }) => {
      const permitScope = Effect.runSync(Scope.make())
      await run(election.acquire(resource, acquireOptions).pipe(Scope.provide(permitScope)))
      return () => run(Scope.close(permitScope, Exit.void))
    },
    close: () => run(Scope.close(scope, Exit.void)),
  })
  return instance
}
