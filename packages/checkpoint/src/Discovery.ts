/**
 * How a client finds a server of the service: a fixed address list, tried in turn, or the
 * `@understudy/store` `NameServer` (seed 003's name server). With the name server, the
 * service's servers contend for one name, the service's (`nameOf(service)`): the holder's
 * registration carries its address (`id=tcp://HOST:PORT`), lives on a lease it keeps alive,
 * and vanishes when the holder dies; a standing-by server then registers at the next epoch.
 * A client resolves the name before each connection, so after a crash it is sent to the
 * server that took the name over, which takes the transfers over as the checkpoint leases
 * lapse. Every client of one service reaches the holder: the other servers stand by (they
 * still serve whoever reaches them by address, and hand-offs name them directly).
 *
 * Keyed by default: the name server is reached through the store, so a `RemoteStore`
 * built with the cluster key authenticates every resolve and registration.
 *
 * @since 0.1.0
 */

import { NameServer } from "@understudy/store"
import { Address } from "@understudy/transport"
import { type Duration, Effect, Option, type Scope, Stream } from "effect"
import type { CheckpointConfigError } from "./CheckpointError.ts"
import * as Durations from "./internal/durations.ts"

/**
 * Finds the server for connection attempt `attempt` (0, 1, ...): `None` when none is known
 * now (the client waits and asks again, counting the attempt).
 *
 * @since 0.1.0
 * @category models
 */
export interface Locator {
  readonly locate: (attempt: number) => Effect.Effect<Option.Option<Address.StreamAddress>>
}

/**
 * A client's service: every server's address (tried in turn), or a `Locator` (the name
 * server's, `nameServer`).
 *
 * @since 0.1.0
 * @category models
 */
export type Service = ReadonlyArray<Address.StreamAddress> | Locator

/** @since 0.1.0 @category models */
export const isLocator = (service: Service): service is Locator => "locate" in service

/**
 * The address for attempt `attempt`: the list's next, or the locator's answer.
 *
 * @since 0.1.0
 * @category combinators
 */
export const locate = (
  service: Service,
  attempt: number,
): Effect.Effect<Option.Option<Address.StreamAddress>> =>
  isLocator(service)
    ? service.locate(attempt)
    : Effect.succeed(Option.fromUndefinedOr(service[attempt % service.length]))

/**
 * The name the servers of `service` register under.
 *
 * @since 0.1.0
 * @category models
 */
export const nameOf = (service: string): string => `checkpoint/${service}`

/** A registration's holder: the server's id and its address. */
const holderOf = (serverId: string, address: string) => `${serverId}=${address}`

/**
 * The holder's address, or `None` for a holder that is not `id=tcp://...` (registered by
 * something else under the same name).
 *
 * @since 0.1.0
 * @category models
 */
export const parseHolder = (holder: string): Option.Option<Address.StreamAddress> => {
  const equals = holder.indexOf("=")
  if (equals < 0) return Option.none()
  const address = Address.parseStream(holder.slice(equals + 1))
  return address instanceof Address.InvalidAddress ? Option.none() : Option.some(address)
}

/**
 * A client's locator on the `NameServer` in context: the current holder of the service's
 * name. A store that does not answer, or no holder (between a death and the next
 * registration), is `None`: the client waits and asks again.
 *
 * @since 0.1.0
 * @category constructors
 */
export const nameServer = (service: string): Effect.Effect<Locator, never, NameServer.NameServer> =>
  Effect.map(NameServer.NameServer, (names) => ({
    locate: () =>
      names.resolve(nameOf(service)).pipe(
        Effect.map(Option.flatMap((holder) => parseHolder(holder.holder))),
        Effect.orElseSucceed(() => Option.none<Address.StreamAddress>()),
      ),
  }))

/** @since 0.1.0 @category models */
export interface AdvertiseOptions {
  /** The service's name (as the clients' `nameServer(service)`). */
  readonly service: string
  readonly serverId: string
  /** Where clients reach this server (`tcp://HOST:PORT`). */
  readonly address: Address.StreamAddress
  /**
   * The registration's lease: how long after this server's death clients are still sent to
   * it. Default 1,000 ms (the checkpoint lease's default: clients come back as the
   * transfers become free to take over). A `Duration.Input`: `"1 second"`, milliseconds, a
   * `Duration`.
   */
  readonly ttl?: Duration.Input
  /** Told when this server takes the name (`held`) and when it loses it, with the epoch. */
  readonly onChange?: (event: { readonly held: boolean; readonly epoch: number }) => void
}

/**
 * Contends for the service's name on the `NameServer` in context until the scope closes
 * (which gives the name up at once): registers when nobody holds it, at the epoch after the
 * last one seen, keeps it while alive, and stands by while another server holds it. A lost
 * registration (superseded, lease ended, store unreachable) goes back to standing by.
 *
 * @since 0.1.0
 * @category constructors
 */
export const advertise = (
  options: AdvertiseOptions,
): Effect.Effect<void, CheckpointConfigError, NameServer.NameServer | Scope.Scope> =>
  Effect.gen(function* () {
    const durations = yield* Durations.millis(options, ["ttl"])
    const names = yield* NameServer.NameServer
    const name = nameOf(options.service)
    const holder = holderOf(options.serverId, Address.format(options.address))
    const ttlMs = durations.ttl ?? 1_000
    let epoch = 0

    /** Until nobody holds the name (the watch tells at once; ten TTLs at most, then a fresh look). */
    const vacancy = names.changes(name).pipe(
      Stream.tap((current) =>
        Effect.sync(() => {
          if (Option.isSome(current)) epoch = Math.max(epoch, current.value.epoch)
        }),
      ),
      Stream.filter(Option.isNone),
      Stream.runHead,
      Effect.timeoutOption(10 * ttlMs),
      Effect.ignore,
    )

    const holdOnce = Effect.scoped(
      Effect.gen(function* () {
        const registration = yield* names.register(name, holder, epoch + 1, { ttl: ttlMs })
        epoch = registration.holder.epoch
        yield* Effect.logInfo("checkpoint: holds the service's name").pipe(
          Effect.annotateLogs({ name, epoch }),
        )
        options.onChange?.({ held: true, epoch })
        const lost = yield* registration.lost.pipe(
          Effect.onInterrupt(() => Effect.sync(() => options.onChange?.({ held: false, epoch }))),
        )
        options.onChange?.({ held: false, epoch })
        yield* Effect.logInfo("checkpoint: lost the service's name").pipe(
          Effect.annotateLogs({ name, epoch, reason: lost._tag }),
        )
      }),
    ).pipe(
      // Another server claimed this epoch first: it is registering (its holder may not be
      // written yet). Stand by a TTL before looking again, rather than supersede it.
      Effect.catchTag("StaleEpoch", (stale) =>
        Effect.sync(() => {
          epoch = Math.max(epoch, stale.current)
        }).pipe(Effect.andThen(Effect.sleep(ttlMs))),
      ),
      // The store did not answer: ask again after a while.
      Effect.catch(() => Effect.sleep(Math.max(1, Math.floor(ttlMs / 3)))),
    )

    yield* Effect.forkScoped(
      Effect.forever(
        Effect.gen(function* () {
          yield* vacancy
          const current = yield* names.resolve(name).pipe(Effect.option, Effect.map(Option.flatten))
          if (Option.isSome(current)) {
            epoch = Math.max(epoch, current.value.epoch)
            return
          }
          yield* holdOnce
        }),
      ),
    )
  })
