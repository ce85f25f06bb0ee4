/**
 * One server of the pool as its own OS process, for the benchmark's real-process case: the
 * options come as one JSON argument (the pool secret in hex in `POOL_SECRET_HEX`), and it
 * prints JSON lines: `{"t":"ready"}`, then `{"t":"BecameLeader","term":…}` when it leads and
 * `{"t":"SteppedDown","term":…}` when it stops leading.
 */
import { Redacted } from "effect"
import { createServer } from "../src/Facade.ts"
import type * as Server from "../src/Server.ts"

const options = JSON.parse(process.argv[2]!) as Omit<Server.Options, "poolSecret">
const secret = Redacted.make(new Uint8Array(Buffer.from(process.env.POOL_SECRET_HEX!, "hex")))
const server = await createServer({ ...options, poolSecret: secret })
for (const t of ["BecameLeader", "SteppedDown"])
  server.on(t, (event: { readonly term: number }) =>
    process.stdout.write(`${JSON.stringify({ t, term: event.term })}\n`),
  )
process.stdout.write(`${JSON.stringify({ t: "ready" })}\n`)
process.once("SIGTERM", () => void server.close().then(() => process.exit(0)))
