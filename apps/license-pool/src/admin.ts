/**
 * `license-admin`: `keygen` (the pool key file), `vendor-keygen` and `sign-license` (the
 * vendor's side), `status` (each server's role, term, seats and license) and
 * `publish-license FILE` (offers a newer signed license file to the pool).
 *
 * @since 0.1.0
 */
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Admin, Message, Signing } from "@understudy/heartbeat-pool"
import { ClusterKey, NodeDatagram } from "@understudy/transport"
import { Effect, Option, Result } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import {
  type Chosen,
  choose,
  exitCode,
  line,
  parsePool,
  poolFlags,
  poolSecret,
  runCommand,
  runUntilSignal,
  usageError,
} from "./common.ts"

const program = "license-admin"

const chosen: Chosen = {}

const keyFile = Flag.String("key-file").pipe(
  Flag.withDescription("The pool key file"),
  Flag.withDefault("pool.key"),
)
const out = Flag.String("out").pipe(Flag.optional)

const keygen = Command.make("keygen", { keyFile, json: poolFlags.json }, ({ keyFile, json }) =>
  choose(chosen, () =>
    runUntilSignal(
      ClusterKey.generateFile(keyFile).pipe(
        Effect.as(exitCode.ok),
        Effect.tap(() => Effect.sync(() => json && line({ type: "keygen", ok: true }))),
      ),
    ),
  ),
).pipe(
  Command.withDescription(
    "Writes a new pool key (mode 0600; an existing file is never replaced). Every server and client of the pool uses it. A key file that others may read is refused.",
  ),
)

const vendorKeygen = Command.make(
  "vendor-keygen",
  { out: out.pipe(Flag.withDescription("Directory for vendor.key (0600) and vendor.pub")) },
  ({ out }) =>
    choose(chosen, () => {
      if (Option.isNone(out)) return usageError(program, "--out is required")
      const keys = Signing.generateVendorKeys()
      writeFileSync(join(out.value, "vendor.key"), keys.privatePem, { mode: 0o600, flag: "wx" })
      writeFileSync(join(out.value, "vendor.pub"), keys.publicPem, { flag: "wx" })
      return exitCode.ok
    }),
).pipe(Command.withDescription("Writes the vendor's signing key pair"))

const signLicense = Command.make(
  "sign-license",
  {
    vendorPrivate: Flag.String("vendor-private").pipe(
      Flag.withDescription("The vendor's private key (PEM)"),
      Flag.optional,
    ),
    product: Flag.String("product").pipe(Flag.optional),
    seats: Flag.String("seats").pipe(Flag.withDefault("")),
    sequence: Flag.String("sequence").pipe(
      Flag.withDescription("Newer files have greater numbers"),
      Flag.withDefault(""),
    ),
    expires: Flag.String("expires").pipe(Flag.withDefault("2100-01-01")),
    out: out.pipe(Flag.withDescription("The license file to write")),
  },
  (input) =>
    choose(chosen, () => {
      const seats = input.seats === "" ? Number.NaN : Number(input.seats)
      const sequence = input.sequence === "" ? Number.NaN : Number(input.sequence)
      const expiresAtMs = Date.parse(input.expires)
      if (
        !Number.isInteger(seats) ||
        seats < 0 ||
        !Number.isInteger(sequence) ||
        sequence < 0 ||
        Number.isNaN(expiresAtMs)
      ) {
        return usageError(program, "--seats, --sequence and --expires must be valid")
      }
      if (
        Option.isNone(input.product) ||
        Option.isNone(input.out) ||
        Option.isNone(input.vendorPrivate)
      ) {
        return usageError(program, "--product, --out and --vendor-private are required")
      }
      const license = Signing.signLicense(readFileSync(input.vendorPrivate.value, "utf8"), {
        product: input.product.value,
        seats,
        expiresAtMs,
        sequence,
      })
      writeFileSync(input.out.value, `${JSON.stringify(license)}\n`)
      return exitCode.ok
    }),
).pipe(Command.withDescription("Signs a license file with the vendor's key"))

const status = Command.make("status", poolFlags, (input) =>
  choose(chosen, () => ask("status", input, undefined)),
).pipe(
  Command.withDescription(
    "Each server's role, term, seats in use and share (seats it may grant without asking), and the license's sequence number",
  ),
)

const publishLicense = Command.make(
  "publish-license",
  {
    file: Argument.String("file").pipe(Argument.withDescription("A signed license file")),
    ...poolFlags,
  },
  (input) => choose(chosen, () => ask("publish-license", input, input.file)),
).pipe(
  Command.withDescription(
    "Offers a newer signed license file to the pool, which spreads it (an older or forged one is refused)",
  ),
)

const command = Command.make(program).pipe(
  Command.withDescription("The pool key, the vendor's license files, and the pool's status"),
  Command.withSubcommands([keygen, vendorKeygen, signLicense, status, publishLicense]),
)

const decodeLicense = (text: string): Message.License => {
  const decoded = Message.licenseFileCodec.decode(new TextEncoder().encode(text))
  if (Result.isFailure(decoded)) throw decoded.failure
  return decoded.success
}

const ask = (
  command: "status" | "publish-license",
  input: {
    readonly pool: Option.Option<string>
    readonly keyFile: Option.Option<string>
    readonly insecure: boolean
    readonly json: boolean
  },
  file: string | undefined,
): Promise<number> | number => {
  const json = input.json
  const pool = parsePool(Option.getOrElse(input.pool, () => ""))
  if (typeof pool === "string") return usageError(program, pool)
  let message: Message.ClientRequest & { _tag: "Status" | "Publish" }
  if (file === undefined) message = { _tag: "Status" }
  else {
    try {
      message = { _tag: "Publish", license: decodeLicense(readFileSync(file, "utf8")) }
    } catch (error) {
      return usageError(program, `not a license file: ${(error as Error).message}`)
    }
  }
  return runUntilSignal(
    Effect.gen(function* () {
      const secret = yield* poolSecret(Option.getOrUndefined(input.keyFile), input.insecure)
      const replies = yield* Admin.ask(
        pool.map((entry) => ({
          id: entry.id,
          address: { _tag: "Udp", host: entry.host, port: entry.clientPort },
        })),
        message,
        secret,
      )
      const servers = pool.map((entry) => ({
        server: entry.id,
        reply: replies.get(entry.id) ?? null,
      }))
      if (command === "status") {
        const leader = servers.find(
          (entry) => entry.reply?._tag === "StatusReply" && entry.reply.role === "leader",
        )
        const status = {
          type: "status",
          leader: leader?.server ?? null,
          term: leader?.reply?._tag === "StatusReply" ? leader.reply.term : null,
          servers: servers.map((entry) =>
            entry.reply === null
              ? { server: entry.server, reachable: false }
              : { reachable: true, ...entry.reply },
          ),
        }
        if (json) line(status)
        else process.stdout.write(`${JSON.stringify(status, null, 2)}\n`)
        return replies.size > 0 ? exitCode.ok : exitCode.failure
      }
      const accepted = servers.some(
        (entry) => entry.reply?._tag === "PublishReply" && entry.reply.accepted,
      )
      const result = {
        type: "publish",
        accepted,
        servers: servers.map((entry) => ({ server: entry.server, reply: entry.reply })),
      }
      if (json) line(result)
      else process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
      return accepted ? exitCode.ok : exitCode.failure
    }).pipe(Effect.provide(NodeDatagram.layer)),
  )
}

runCommand(program, command, chosen).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${program}: internal error: ${String(error)}\n`)
    process.exit(70)
  },
)
