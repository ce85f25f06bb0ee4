/**
 * `license-server`: one server of a license pool. Prints JSON lines: `ready` with its
 * endpoints, then one `event` per pool event (leader elected, follower down, record merged,
 * seat allocated, license adopted, ...).
 *
 * @since 0.1.0
 */
import { readFileSync } from "node:fs"
import { Config, Message, Resource, Server } from "@understudy/heartbeat-pool"
import { NodeDatagram, Observability } from "@understudy/transport"
import { Effect, Option, Result, Schema, Stream } from "effect"
import { Command } from "effect/cli"
import {
  type Chosen,
  choose,
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

const program = "license-server"

const command = Command.make(
  program,
  {
    id: textFlag("id", "This server's id in --pool"),
    ...poolFlags,
    vendorKey: textFlag(
      "vendor-key",
      "The vendor's public key (PEM) that signs license files (or --resource instead)",
    ),
    resource: textFlag(
      "resource",
      "Lease out a resource of your own instead of a vendor's license: NAME:CAPACITY, or NAME:CAPACITY:VERSION (a higher version given to any server at a restart spreads to the pool). Signed with the pool key; clients ask for it with --product NAME",
    ),
    stateDir: textFlag("state-dir", "Where this server keeps its durable state"),
    license: textFlag(
      "license",
      "A signed license file, adopted when its sequence number is newer than the stored one and spread to the pool",
    ),
    heartbeat: textFlag(
      "heartbeat",
      "Heartbeat interval (e.g. 200ms); the other timings derive from it",
      "200ms",
    ),
    lease: textFlag("lease", "How long a seat lasts without a heartbeat", "6s"),
    metrics: textFlag("metrics", "Serve metrics as Prometheus text at http://HOST:PORT/metrics"),
    otlp: textFlag(
      "otlp",
      "Export traces and metrics to an OpenTelemetry collector over OTLP/HTTP (e.g. http://127.0.0.1:4318)",
    ),
  },
  (input) => choose(chosen, () => serve(input)),
).pipe(
  Command.withDescription(
    "Runs one server of the pool (3 or more, the same --pool everywhere; its order is the leader priority list). --key-file (default pool.key, from 'license-admin keygen') authenticates all pool traffic; --insecure runs without it.",
  ),
)
const chosen: Chosen = {}

const decodeLicense = (text: string): Message.License => {
  const decoded = Message.licenseFileCodec.decode(new TextEncoder().encode(text))
  if (Result.isFailure(decoded)) throw decoded.failure
  return decoded.success
}

/**
 * `--resource NAME:CAPACITY[:VERSION]` as a `Resource`, or why not (the name may hold
 * colons: capacity and version are the last fields that are numbers).
 */
const parseResource = (text: string): Resource.Resource | string => {
  const match = /^(.+?):(\d+)(?::(\d+))?$/.exec(text)
  const bad = `bad --resource ${JSON.stringify(text)}: expected NAME:CAPACITY or NAME:CAPACITY:VERSION`
  if (match === null) return bad
  const decoded = Schema.decodeUnknownResult(Resource.ResourceSchema)({
    name: match[1],
    capacity: Number(match[2]),
    ...(match[3] !== undefined ? { version: Number(match[3]) } : {}),
  })
  return Result.isFailure(decoded) ? `${bad} (${decoded.failure.message})` : decoded.success
}

const serve = (input: {
  readonly id: Option.Option<string>
  readonly pool: Option.Option<string>
  readonly keyFile: Option.Option<string>
  readonly insecure: boolean
  readonly json: boolean
  readonly vendorKey: Option.Option<string>
  readonly resource: Option.Option<string>
  readonly stateDir: Option.Option<string>
  readonly license: Option.Option<string>
  readonly heartbeat: string
  readonly lease: string
  readonly metrics: Option.Option<string>
  readonly otlp: Option.Option<string>
}): Promise<number> | number => {
  const id = Option.getOrUndefined(input.id)
  const pool = parsePool(Option.getOrElse(input.pool, () => ""))
  if (id === undefined) return usageError(program, "--id is required")
  if (typeof pool === "string") return usageError(program, pool)
  if (!pool.some((entry) => entry.id === id))
    return usageError(program, `--id ${id} is not in --pool`)
  // The same --metrics / --otlp parsing as every program of the project.
  const observability = Observability.takeFlags([
    ...Option.match(input.metrics, { onNone: () => [], onSome: (at) => ["--metrics", at] }),
    ...Option.match(input.otlp, { onNone: () => [], onSome: (url) => ["--otlp", url] }),
  ])
  if (observability._tag === "UsageError") return usageError(program, observability.message)
  if (
    Option.isSome(input.resource) &&
    (Option.isSome(input.vendorKey) || Option.isSome(input.license))
  )
    return usageError(
      program,
      "--resource excludes --vendor-key and --license (one source of capacity)",
    )
  if (Option.isNone(input.resource) && Option.isNone(input.vendorKey))
    return usageError(program, "--vendor-key (with --license) or --resource is required")
  const resource = Option.isSome(input.resource) ? parseResource(input.resource.value) : undefined
  if (typeof resource === "string") return usageError(program, resource)
  const stateDir = Option.getOrUndefined(input.stateDir)
  if (stateDir === undefined) return usageError(program, "--state-dir is required")
  const heartbeatMs = parseDuration(input.heartbeat)
  const leaseMs = parseDuration(input.lease)
  if (heartbeatMs === undefined || leaseMs === undefined)
    return usageError(program, "bad --heartbeat or --lease")
  // The other timings derive from the heartbeat; the decoder refuses unsafe combinations.
  const config = Config.decodeServer({ heartbeatInterval: heartbeatMs, lease: leaseMs })
  if (Result.isFailure(config)) return usageError(program, config.failure.reason)
  let source:
    | { readonly resource: Resource.Resource }
    | { readonly vendorPublicKey: string; readonly license?: Message.License }
  try {
    source =
      resource !== undefined
        ? { resource }
        : {
            vendorPublicKey: readFileSync(Option.getOrThrow(input.vendorKey), "utf8"),
            ...Option.match(input.license, {
              onNone: () => ({}),
              onSome: (path) => ({ license: decodeLicense(readFileSync(path, "utf8")) }),
            }),
          }
  } catch (error) {
    return usageError(program, `cannot read a key or license file: ${(error as Error).message}`)
  }
  const { json } = input
  return runUntilSignal(
    Effect.gen(function* () {
      const secret = yield* poolSecret(Option.getOrUndefined(input.keyFile), input.insecure)
      const running = yield* Server.run({
        self: id,
        members: pool.map((entry) => ({
          id: entry.id,
          peer: { _tag: "Udp", host: entry.host, port: entry.peerPort },
          client: { _tag: "Udp", host: entry.host, port: entry.clientPort },
        })),
        poolSecret: secret,
        ...source,
        stateDir,
        timing: config.success.timing,
        clientsPerServerMax: config.success.clientsPerServerMax,
        seatsPerClientMax: config.success.seatsPerClientMax,
        pendingReservationsMax: config.success.pendingReservationsMax,
        messageBytesMax: config.success.messageBytesMax,
        shareSeatsMax: config.success.shareSeatsMax,
        clientReceiveBufferBytes: config.success.clientReceiveBufferBytes,
      })
      const state = yield* running.state
      const emit = (value: Record<string, unknown>) =>
        json
          ? line(value)
          : process.stdout.write(`${String(value.type)} ${JSON.stringify(value)}\n`)
      emit({
        type: "ready",
        server: id,
        term: state.durable.term,
        sequence: state.durable.license?.sequence ?? 0,
      })
      yield* running.events.pipe(
        Stream.filter((event) => event._tag !== "Reply" && event._tag !== "Ignored"),
        Stream.runForEach((event) =>
          Effect.sync(() => emit({ type: "event", server: id, ...event })),
        ),
        Effect.forkScoped,
      )
      return yield* running.join
    }).pipe(
      Effect.scoped,
      Effect.provide(NodeDatagram.layer),
      Effect.provide(Observability.layer(observability.flags, program)),
    ),
  )
}

runCommand(program, command, chosen).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${program}: internal error: ${String(error)}\n`)
    process.exit(70)
  },
)
