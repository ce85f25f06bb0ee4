/**
 * tcp-repair: an unmodified `curl` downloads a 200 MB object over plain HTTP/1.1 from host
 * A (`takeover-stream serve --backend tcp-repair`); A's host dies mid-transfer (its link
 * down, then SIGKILL: its kernel sends no FIN or RST); the standby on host B rebuilds the
 * very TCP connection from A's checkpoint with Linux's `TCP_REPAIR`, takes the service
 * address and finishes the object. curl must exit 0 with the object's SHA-256. Hosts are
 * network namespaces on a bridge (client, store, A, B): root only, otherwise the row says
 * why and how to run it.
 *
 * @since 0.1.0
 */
import { createHash, randomBytes } from "node:crypto"
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NetNs } from "@understudy/app-kit"
import * as TcpRepairLab from "@understudy/app-takeover-stream/tcp-repair-lab"
import { monotonicMs, waitFor } from "../processes.ts"
import type { Row, Scenario, ScenarioContext } from "../Scenario.ts"

const name = "tcp-repair"
const invariant = "curl exits 0 with the object's SHA-256 through its server's death"
const objectBytes = 200 * 1024 * 1024
const rateBytesPerSecond = 40 * 1024 * 1024

const writeObject = async (file: string): Promise<string> => {
  const hash = createHash("sha256")
  const out = createWriteStream(file)
  for (let written = 0; written < objectBytes; written += 1024 * 1024) {
    const chunk = randomBytes(1024 * 1024)
    hash.update(chunk)
    if (!out.write(chunk)) await new Promise<void>((resolve) => out.once("drain", () => resolve()))
  }
  await new Promise<void>((resolve, reject) =>
    out.end((error?: Error | null) => (error ? reject(error) : resolve())),
  )
  return hash.digest("hex")
}

const run = async (context: ScenarioContext): Promise<ReadonlyArray<Row>> => {
  const unavailable = NetNs.unavailableReason()
  if (unavailable !== undefined)
    return [
      {
        scenario: name,
        failoverMs: undefined,
        invariant,
        ok: true,
        detail: "",
        note: `skipped: ${unavailable}; run as root: sudo npm start -w @understudy/showcase -- --scenario ${name}`,
      },
    ]
  const dir = mkdtempSync(join(tmpdir(), "showcase-tcp-repair-"))
  let lab: TcpRepairLab.TcpRepairLab | undefined
  try {
    context.log(`${name}: writing a 200 MB object`)
    const sha256 = await writeObject(join(dir, "object"))
    lab = await TcpRepairLab.start({ tag: "us14show", dir, leaseMs: 600 })
    const out = join(dir, "out")
    const curl = lab.download("object", out, rateBytesPerSecond)
    await waitFor(
      "curl at 40%",
      () => (curl.bytes() >= objectBytes * 0.4 ? true : undefined),
      60_000,
    )
    context.log(`${name}: curl has ${(curl.bytes() / 1048576).toFixed(0)} MiB; host A dies`)
    lab.kill("a")
    const killedAtMs = monotonicMs()
    const b = lab.b
    const outcome = await waitFor(
      "B resumed or refused",
      () => b.find("resumed") ?? b.find("refused"),
      20_000,
    ).catch(() => undefined)
    const resumedAtMs = monotonicMs()
    const code = await curl.exit(120_000)
    const got = existsSync(out) ? createHash("sha256").update(readFileSync(out)).digest("hex") : ""
    const ok = outcome?.t === "resumed" && code === 0 && got === sha256 && curl.stderr() === ""
    // Seen here (polled every 5 ms): the moment B said it resumed, on this process's clock.
    const failoverMs = outcome?.t === "resumed" ? Math.round(resumedAtMs - killedAtMs) : undefined
    return [
      {
        scenario: name,
        failoverMs,
        invariant,
        ok,
        detail: ok
          ? `curl exit 0, ${curl.bytes()} bytes, SHA-256 right; B resumed at object offset ${outcome?.objectOffset} (detection: A's 600 ms store lease)`
          : `outcome ${JSON.stringify(outcome)}, curl exit ${code} ${curl.stderr().trim()}, SHA-256 ${got === sha256 ? "right" : "wrong"}, B: ${b.stderr().trim()}`,
      },
    ]
  } finally {
    lab?.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** @since 0.1.0 */
export const scenario: Scenario = {
  name,
  description:
    "curl downloads 200 MB over HTTP/1.1 from host A; A's host dies mid-transfer; B rebuilds the TCP connection (TCP_REPAIR) and curl finishes unaware",
  run,
}
