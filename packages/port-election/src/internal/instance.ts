/**
 * One instance as its drivers (the election loop, the subordinate's and the supervisor's)
 * all see it: who it is, where it elects, what it knows, and how it reports. `Election.ts`
 * builds it once and passes it to each driver, beside what that driver alone needs.
 */
import type { Address, Connection, Options, Transport } from "@understudy/transport"
import type { Deferred, Effect, Scope } from "effect"
import type { ElectionError, ElectionEvent, Role } from "../Election.ts"
import type * as Registry from "../Registry.ts"
import type * as Standby from "../Standby.ts"
import type { Member, Message } from "./protocol.ts"
import type * as Supervisor from "./supervisor.ts"

/**
 * What an instance knows that its drivers and its public API share.
 *
 * @since 0.1.0
 * @category models
 */
export interface Shared {
  role: Role
  /** The registry: the last one a supervisor sent, or this instance's own as supervisor. */
  lastMembers: ReadonlyArray<Member>
  /** The supervisor this instance was last welcomed by. */
  lastSupervisorId: string | undefined
  /** The connection to the supervisor, once welcomed. */
  upstream: Connection.Connection<Message> | undefined
  /**
   * `registerMessage()`, built and encoded whenever what it says changes (holdings, the last
   * registry), or undefined: the Register that confirms a takeover then costs nothing while
   * every survivor of the failover competes for the CPU.
   */
  preparedRegistration: Registry.Register | undefined
  /** This instance's term as supervisor, once it is one. */
  supervisor: Supervisor.Supervising | undefined
  /** The election address, bound by the successor the moment its supervisor was lost. */
  bound:
    | { readonly scope: Scope.Closeable; readonly listener: Transport.Listener<Message> }
    | undefined
}

/** @since 0.1.0 @category models */
export interface Instance {
  readonly shared: Shared
  readonly instanceId: string
  readonly address: Address.StreamAddress
  readonly addressText: string
  readonly transport: Transport.Transport["Service"]
  readonly connectionOptions: Options.ConnectionOptions<Message> & {
    readonly keepAlive: { readonly interval: number; readonly timeout: number }
  }
  readonly standby: Standby.Standby
  /**
   * The election's scope: each attempt runs in a scope forked from it, and the subordinate's
   * machine (its cut-off deadline) outlives the attempt that set it.
   */
  readonly electionScope: Scope.Scope
  readonly emit: (event: ElectionEvent) => Effect.Effect<void>
  /** Done once the instance took its first role (or failed the election). */
  readonly firstRole: Deferred.Deferred<void, ElectionError>
  readonly settle: Effect.Effect<void>
}
