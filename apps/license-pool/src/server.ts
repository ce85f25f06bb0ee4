/**
 * `license-server`: one server of a license pool. Prints JSON lines: `ready` with its
 * endpoints, then one `event` per pool event (leader elected, follower down, record merged,
 * seat allocated, license adopted, ...).
 *
 * @since 0.1.0
 */
import { readFileSync } from "node:fs"
import { parseArgs } from "node:util"
import { Config, Message, Server } from "@understudy/heartbeat-pool"
import { NodeDatagram } from "@understudy/transport"
import { Effect, Result, Stream } from "effect"
import {
  exitCode,
  line,
  parseDuration,
  parsePool,
  poolSecret,
  runUntilSignal,
  usageError,
} from "./common.ts"

const program = "license-server"
const usage = `Usage:
  ${program} --id ID --pool ID=HOST:PEER_PORT:CLIENT_PORT,... --vendor-key FILE --state-dir DIR
             [--license FILE] [--key-file FILE | --insecure] [--heartbeat 200ms] [--lease 6s] [--json]

Runs one server of the pool (3 or more, the same --pool everywhere; its order is the leader
priority list). --vendor-key is the vendor's public key (PEM) that signs license files;
--license a signed license file, adopted when its sequence number is newer than the stored
one and spread to the pool. --key-file (default pool.key, from 'license-admin keygen')
authenticates all pool traffic; --insecure runs without it.`

const decodeLicense = (text: string): Message.License => {
  const decoded = Message.licenseFileCodec.decode(new TextEncoder().encode(text))
  if (Result.isFailure(decoded)) throw decoded.failure
  return decoded.success
}

const main = (): Promise<number> | number => {
  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs({
      options: {
        id: { type: "string" },
        pool: { type: "string" },
        "vendor-key": { type: "string" },
        "state-dir": { type: "string" },
        license: { type: "string" },
        "key-file": { type: "string" },
        insecure: { type: "boolean" },
        heartbeat: { type: "string" },
        lease: { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean" },
      },
      strict: true,
    })
  } catch (error) {
    return usageError(program, (error as Error).message)
  }
  const values = parsed.values as Record<string, string | boolean | undefined>
  if (values.help) {
    process.stdout.write(`${usage}\n`)
    return exitCode.ok
  }
  const id = values.id as string | undefined
  const pool = parsePool((values.pool as string | undefined) ?? "")
  if (id === undefined) return usageError(program, "--id is required")
  if (typeof pool === "string") return usageError(program, pool)
  if (!pool.some((entry) => entry.id === id))
    return usageError(program, `--id ${id} is not in --pool`)
  if (values["vendor-key"] === undefined) return usageError(program, "--vendor-key is required")
  if (values["state-dir"] === undefined) return usageError(program, "--state-dir is required")
  const heartbeatMs = parseDuration((values.heartbeat as string | undefined) ?? "200ms")
  const leaseMs = parseDuration((values.lease as string | undefined) ?? "6s")
  if (heartbeatMs === undefined || leaseMs === undefined)
    return usageError(program, "bad --heartbeat or --lease")
  // The other timings derive from the heartbeat; the decoder refuses unsafe combinations.
  const config = Config.decodeServer({ heartbeatInterval: heartbeatMs, lease: leaseMs })
  if (Result.isFailure(config)) return usageError(program, config.failure.reason)
  let vendorPublicKey: string
  let license: Message.License | undefined
  try {
    vendorPublicKey = readFileSync(values["vendor-key"] as string, "utf8")
    if (values.license !== undefined)
      license = decodeLicense(readFileSync(values.license as string, "utf8"))
  } catch (error) {
    return usageError(program, `cannot read a key or license file: ${(error as Error).message}`)
  }
  const json = values.json === true
  return runUntilSignal(
    Effect.gen(function* () {
      const secret = yield* poolSecret(
        values["key-file"] as string | undefined,
        values.insecure === true,
      )
      const running = yield* Server.run({
        self: id,
        members: pool.map((entry) => ({
          id: entry.id,
          peer: { _tag: "Udp", host: entry.host, port: entry.peerPort },
          client: { _tag: "Udp", host: entry.host, port: entry.clientPort },
        })),
        poolSecret: secret,
        vendorPublicKey,
        stateDir: values["state-dir"] as string,
        ...(license !== undefined ? { license } : {}),
        timing: config.success.timing,
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
