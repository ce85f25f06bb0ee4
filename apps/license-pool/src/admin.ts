/**
 * `license-admin`: `keygen` (the pool key file), `vendor-keygen` and `sign-license` (the
 * vendor's side), `status` (each server's role, term, seats and license) and
 * `publish-license FILE` (offers a newer signed license file to the pool).
 *
 * @since 0.1.0
 */
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { Admin, Message, Signing } from "@understudy/heartbeat-pool"
import { ClusterKey, NodeDatagram } from "@understudy/transport"
import { Effect, Result } from "effect"
import { exitCode, line, parsePool, poolSecret, runUntilSignal, usageError } from "./common.ts"

const program = "license-admin"
const usage = `Usage:
  ${program} keygen [--key-file pool.key]
  ${program} vendor-keygen --out DIR                 writes DIR/vendor.key (0600) and DIR/vendor.pub
  ${program} sign-license --vendor-private FILE --product NAME --seats N --sequence N
                [--expires 2030-01-01] --out FILE
  ${program} status --pool ID=HOST:PEER_PORT:CLIENT_PORT,... [--key-file FILE | --insecure] [--json]
  ${program} publish-license FILE --pool ... [--key-file FILE | --insecure] [--json]

keygen writes a new pool key (mode 0600; an existing file is never replaced). Every server
and client of the pool uses it. A key file that others may read is refused.`

const decodeLicense = (text: string): Message.License => {
  const decoded = Message.licenseFileCodec.decode(new TextEncoder().encode(text))
  if (Result.isFailure(decoded)) throw decoded.failure
  return decoded.success
}

const main = (): Promise<number> | number => {
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: Array<string> }
  try {
    parsed = parseArgs({
      options: {
        "key-file": { type: "string" },
        insecure: { type: "boolean" },
        pool: { type: "string" },
        json: { type: "boolean" },
        out: { type: "string" },
        "vendor-private": { type: "string" },
        product: { type: "string" },
        seats: { type: "string" },
        sequence: { type: "string" },
        expires: { type: "string" },
        help: { type: "boolean" },
      },
      allowPositionals: true,
      strict: true,
    }) as typeof parsed
  } catch (error) {
    return usageError(program, (error as Error).message)
  }
  const { values, positionals } = parsed
  const command = positionals[0]
  if (values.help || command === undefined) {
    process.stdout.write(`${usage}\n`)
    return values.help ? exitCode.ok : exitCode.usage
  }
  const json = values.json === true
  switch (command) {
    case "keygen":
      return runUntilSignal(
        ClusterKey.generateFile((values["key-file"] as string | undefined) ?? "pool.key").pipe(
          Effect.as(exitCode.ok),
          Effect.tap(() => Effect.sync(() => json && line({ type: "keygen", ok: true }))),
        ),
      )
    case "vendor-keygen": {
      const out = values.out as string | undefined
      if (out === undefined) return usageError(program, "--out is required")
      const keys = Signing.generateVendorKeys()
      writeFileSync(join(out, "vendor.key"), keys.privatePem, { mode: 0o600, flag: "wx" })
      writeFileSync(join(out, "vendor.pub"), keys.publicPem, { flag: "wx" })
      return exitCode.ok
    }
    case "sign-license": {
      const seats = Number(values.seats)
      const sequence = Number(values.sequence)
      const expiresAtMs = Date.parse((values.expires as string | undefined) ?? "2100-01-01")
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
        values.product === undefined ||
        values.out === undefined ||
        values["vendor-private"] === undefined
      ) {
        return usageError(program, "--product, --out and --vendor-private are required")
      }
      const license = Signing.signLicense(
        readFileSync(values["vendor-private"] as string, "utf8"),
        {
          product: values.product as string,
          seats,
          expiresAtMs,
          sequence,
        },
      )
      writeFileSync(values.out as string, `${JSON.stringify(license)}\n`)
      return exitCode.ok
    }
    case "status":
    case "publish-license": {
      const pool = parsePool((values.pool as string | undefined) ?? "")
      if (typeof pool === "string") return usageError(program, pool)
      let message: Message.ClientRequest & { _tag: "Status" | "Publish" }
      if (command === "status") message = { _tag: "Status" }
      else {
        const file = positionals[1]
        if (file === undefined) return usageError(program, "publish-license needs a FILE")
        try {
          message = { _tag: "Publish", license: decodeLicense(readFileSync(file, "utf8")) }
        } catch (error) {
          return usageError(program, `not a license file: ${(error as Error).message}`)
        }
      }
      return runUntilSignal(
        Effect.gen(function* () {
          const secret = yield* poolSecret(
            values["key-file"] as string | undefined,
            values.insecure === true,
          )
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
    default:
      return usageError(program, `unknown command ${JSON.stringify(command)}`)
  }
}

Promise.resolve(main()).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${program}: internal error: ${String(error)}\n`)
    process.exit(70)
  },
)
