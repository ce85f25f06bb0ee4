/**
 * `license-client`: checks out seats of a product, heartbeats, holds them for `--hold`,
 * gives them back and exits. With `--json` it prints one JSON line per grant, re-attachment,
 * loss and denial, with its server, term and time.
 *
 * @since 0.1.0
 */
import { randomBytes } from "node:crypto"
import { parseArgs } from "node:util"
import { Client } from "@understudy/heartbeat-pool"
import { NodeDatagram } from "@understudy/transport"
import { Duration, Effect, Stream } from "effect"
import {
  exitCode,
  line,
  parseDuration,
  parsePool,
  poolSecret,
  runUntilSignal,
  usageError,
} from "./common.ts"

const program = "license-client"
const usage = `Usage:
  ${program} --pool ID=HOST:PEER_PORT:CLIENT_PORT,... --product NAME [--hold 30s] [--seats 1]
             [--id NAME] [--first N] [--heartbeat 200ms] [--key-file FILE | --insecure] [--json]

Checks out --seats seats of --product from the pool, heartbeats the server that granted them,
re-attaches through the leader priority list when that server dies, holds them for --hold,
then releases them. Exit code 0 when it held its seats at the end, 1 otherwise.`

const main = (): Promise<number> | number => {
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({
      options: {
        pool: { type: "string" },
        product: { type: "string" },
        hold: { type: "string" },
        seats: { type: "string" },
        id: { type: "string" },
        first: { type: "string" },
        heartbeat: { type: "string" },
        "key-file": { type: "string" },
        insecure: { type: "boolean" },
        json: { type: "boolean" },
        help: { type: "boolean" },
      },
      strict: true,
    }).values as Record<string, string | boolean | undefined>
  } catch (error) {
    return usageError(program, (error as Error).message)
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`)
    return exitCode.ok
  }
  const pool = parsePool((values.pool as string | undefined) ?? "")
  if (typeof pool === "string") return usageError(program, pool)
  const product = values.product as string | undefined
  if (product === undefined) return usageError(program, "--product is required")
  const holdMs = parseDuration((values.hold as string | undefined) ?? "30s")
  const heartbeatMs = parseDuration((values.heartbeat as string | undefined) ?? "200ms")
  const seats = Number((values.seats as string | undefined) ?? "1")
  const first = Number((values.first as string | undefined) ?? "0")
  if (holdMs === undefined || heartbeatMs === undefined)
    return usageError(program, "bad --hold or --heartbeat")
  if (!Number.isInteger(seats) || seats < 1 || seats > 1_000)
    return usageError(program, "bad --seats")
  if (!Number.isInteger(first) || first < 0) return usageError(program, "bad --first")
  const id = (values.id as string | undefined) ?? `client-${randomBytes(6).toString("hex")}`
  const json = values.json === true
  return runUntilSignal(
    Effect.gen(function* () {
      const secret = yield* poolSecret(
        values["key-file"] as string | undefined,
        values.insecure === true,
      )
      const client = yield* Client.run({
        id,
        bind: { _tag: "Udp", host: pool[0]!.host, port: 0 },
        servers: pool.map((entry) => ({
          id: entry.id,
          address: { _tag: "Udp", host: entry.host, port: entry.clientPort },
        })),
        poolSecret: secret,
        product,
        seats,
        heartbeatIntervalMs: heartbeatMs,
        firstServer: first,
      })
      yield* client.events.pipe(
        Stream.runForEach((event) =>
          Effect.sync(() => {
            const { _tag, ...rest } = event
            if (json) line({ type: _tag, client: id, ...rest })
            else process.stdout.write(`${_tag} ${JSON.stringify(rest)}\n`)
          }),
        ),
        Effect.forkScoped,
      )
      if (json) line({ type: "started", client: id, product, seats })
      yield* Effect.sleep(Duration.millis(holdMs))
      const state = yield* client.state
      const held = state.phase === "holding" || state.phase === "reattaching"
      yield* client.release
      yield* Effect.sleep(Duration.millis(50))
      return held ? exitCode.ok : exitCode.failure
    }).pipe(Effect.scoped, Effect.provide(NodeDatagram.layer)),
  )
}

Promise.resolve(main()).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${program}: internal error: ${String(error)}\n`)
    process.exit(70)
  },
)
