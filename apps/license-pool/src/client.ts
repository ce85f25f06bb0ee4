/**
 * `license-client`: checks out seats of a product, heartbeats, holds them for `--hold`,
 * gives them back and exits. With `--json` it prints one JSON line per grant, re-attachment,
 * loss and denial, with its server, term and time.
 *
 * @since 0.1.0
 */
import { randomBytes } from "node:crypto"
import { Client } from "@understudy/heartbeat-pool"
import { NodeDatagram } from "@understudy/transport"
import { Duration, Effect, Option, Stream } from "effect"
import { Command } from "effect/cli"
import {
  type Chosen,
  choose,
  exitCode,
  line,
  parseDuration,
  parsePool,
  poolFlags,
  poolSecret,
  runCommand,
  runUntilSignal,
  textFlag,
  usageError,
} from "./common.ts"

const program = "license-client"

const command = Command.make(
  program,
  {
    ...poolFlags,
    product: textFlag("product", "The product to check out seats of"),
    hold: textFlag("hold", "How long to hold the seats (e.g. 30s, 1500ms, 2m)", "30s"),
    seats: textFlag("seats", "Seats to check out", "1"),
    id: textFlag("id", "This client's name (default: random)"),
    first: textFlag("first", "Index in --pool of the first server to ask", "0"),
    heartbeat: textFlag("heartbeat", "Heartbeat interval", "200ms"),
    clients: textFlag(
      "clients",
      "Clients to run in this process (load tests): named ID-0, ID-1, ..., each starting one server further along --pool",
      "1",
    ),
  },
  (input) => choose(chosen, () => checkOut(input)),
).pipe(
  Command.withDescription(
    "Checks out --seats seats of --product from the pool, heartbeats the server that granted them, re-attaches through the leader priority list when that server dies, holds them for --hold, then releases them. Exit code 0 when it held its seats at the end, 1 otherwise.",
  ),
)
const chosen: Chosen = {}

const checkOut = (input: {
  readonly pool: Option.Option<string>
  readonly keyFile: Option.Option<string>
  readonly insecure: boolean
  readonly json: boolean
  readonly product: Option.Option<string>
  readonly hold: string
  readonly seats: string
  readonly id: Option.Option<string>
  readonly first: string
  readonly heartbeat: string
  readonly clients: string
}): Promise<number> | number => {
  const pool = parsePool(Option.getOrElse(input.pool, () => ""))
  if (typeof pool === "string") return usageError(program, pool)
  const product = Option.getOrUndefined(input.product)
  if (product === undefined) return usageError(program, "--product is required")
  const holdMs = parseDuration(input.hold)
  const heartbeatMs = parseDuration(input.heartbeat)
  const seats = Number(input.seats)
  const first = Number(input.first)
  if (holdMs === undefined || heartbeatMs === undefined)
    return usageError(program, "bad --hold or --heartbeat")
  if (!Number.isInteger(seats) || seats < 1 || seats > 1_000)
    return usageError(program, "bad --seats")
  if (!Number.isInteger(first) || first < 0) return usageError(program, "bad --first")
  const count = Number(input.clients)
  if (!Number.isInteger(count) || count < 1 || count > 1_000)
    return usageError(program, "bad --clients (1 to 1000)")
  const name = Option.getOrElse(input.id, () => `client-${randomBytes(6).toString("hex")}`)
  const { json } = input
  const checkOutOne = (secret: Effect.Success<ReturnType<typeof poolSecret>>, index: number) =>
    Effect.gen(function* () {
      const id = count === 1 ? name : `${name}-${index}`
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
        heartbeatInterval: heartbeatMs,
        firstServer: (first + index) % pool.length,
      })
      yield* client.events.pipe(
        Stream.runForEach((event) =>
          Effect.sync(() => {
            const { _tag, ...rest } = event
            if (json) line({ type: _tag, client: id, ...rest })
            else process.stdout.write(`${_tag} ${JSON.stringify({ client: id, ...rest })}\n`)
          }),
        ),
        Effect.forkScoped,
      )
      if (json) line({ type: "started", client: id, product, seats })
      return client
    })
  return runUntilSignal(
    Effect.gen(function* () {
      const secret = yield* poolSecret(Option.getOrUndefined(input.keyFile), input.insecure)
      const clients = yield* Effect.forEach(
        Array.from({ length: count }, (_, index) => index),
        (index) => checkOutOne(secret, index),
      )
      yield* Effect.sleep(Duration.millis(holdMs))
      let held = true
      for (const client of clients) {
        const state = yield* client.state
        held &&= state.phase === "holding" || state.phase === "reattaching"
        yield* client.release
      }
      yield* Effect.sleep(Duration.millis(50))
      return held ? exitCode.ok : exitCode.failure
    }).pipe(Effect.scoped, Effect.provide(NodeDatagram.layer)),
  )
}

runCommand(program, command, chosen).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${program}: internal error: ${String(error)}\n`)
    process.exit(70)
  },
)
