/**
 * What one client is, wherever it runs (its own `Client.run`, or one of a `ClientGroup`):
 * its options decoded with their defaults, and the client machine they make.
 */
import type { Result } from "effect"
import type * as Client from "../Client.ts"
import * as ClientMachine from "../ClientMachine.ts"
import * as Config from "../Config.ts"
import type { PoolInvalidConfig } from "../Machine.ts"

/** The options of one client that are not about its socket or the pool's servers and key. */
export type Settings = Pick<
  Client.Options,
  | "product"
  | "seats"
  | "heartbeatInterval"
  | "missLimit"
  | "retryInterval"
  | "minRetryInterval"
  | "firstServer"
>

/**
 * `settings`' timings in milliseconds with their defaults, or `PoolInvalidConfig` naming the
 * option that is out of range (a duration that is not positive and finite, a retry wait above
 * the interval, a count out of range).
 */
export const decode = (
  settings: Settings,
): Result.Result<Config.ClientConfig, PoolInvalidConfig> => {
  const given = settings as unknown as Record<string, unknown>
  return Config.decodeClient(
    Object.fromEntries(
      Object.keys(Config.ClientConfigInput.fields).flatMap((key) =>
        given[key] === undefined ? [] : [[key, given[key]]],
      ),
    ),
  )
}

/** The client machine of `settings` (decoded as `config`), for the servers `servers`. */
export const machine = (
  settings: Settings,
  config: Config.ClientConfig,
  servers: ReadonlyArray<string>,
): ReturnType<typeof ClientMachine.make> =>
  ClientMachine.make({
    servers,
    product: settings.product,
    seats: config.seats,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    missLimit: config.missLimit,
    retryIntervalMs: config.retryIntervalMs,
    minRetryIntervalMs: config.minRetryIntervalMs,
    ...(settings.firstServer !== undefined ? { firstServer: settings.firstServer } : {}),
  })
