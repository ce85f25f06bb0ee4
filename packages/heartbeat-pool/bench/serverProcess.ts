/**
 * One server of the pool as its own OS process, for the benchmark's real-process case: the
 * options come as one JSON argument (the pool secret in hex in `POOL_SECRET_HEX`), and it
 * prints JSON lines: `{"t":"ready"}`, then `{"t":"BecameLeader","term":…,"wallMs":…}` when it
 * leads and `{"t":"SteppedDown",…}` when it stops leading; for the bench's phases of a
 * failover, `CheckSent`, `ElectionStarted`, `RecordMerged`, and per client taken in
 * `Carried` / `Allocated` (`{"t","client","reattached","wallMs"}`); and `stall` lines
 * (`stalls.ts`). The baseline's store runs in a process of its own (`storeProcess.ts`).
 */
import { Redacted } from "effect"
import { createServer } from "../src/Facade.ts"
import type * as Server from "../src/Server.ts"
import { watchStalls } from "./stalls.ts"

const options = JSON.parse(process.argv[2]!) as Omit<Server.Options, "poolSecret">
const secret = Redacted.make(new Uint8Array(Buffer.from(process.env.POOL_SECRET_HEX!, "hex")))
const server = await createServer({ ...options, poolSecret: secret })
watchStalls()
for (const t of [
  "BecameLeader",
  "SteppedDown",
  "CheckSent",
  "ElectionStarted",
  "RecordMerged",
  "Carried",
  "Allocated",
])
  server.on(
    t,
    (event: { readonly term: number; readonly client?: string; readonly reattached?: boolean }) =>
      process.stdout.write(
        `${JSON.stringify({ t, term: event.term, client: event.client, reattached: event.reattached, wallMs: Date.now() })}\n`,
      ),
  )
process.stdout.write(`${JSON.stringify({ t: "ready" })}\n`)
process.once("SIGTERM", () => void server.close().then(() => process.exit(0)))
