/**
 * Bad input on the HTTP API of a running one-server group: fuzzed methods, paths (bad
 * percent-encodings, huge ones), client / request id headers and bodies (up to past the
 * limit), and many distinct client ids. Every request gets a typed answer (a 4xx, a redirect,
 * a 503 with a reason, or 200), never a 500 or a dropped connection, and what was written
 * before is still there afterwards.
 */
import * as http from "node:http"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { ServerGroupCommand } from "@understudy/app-kit"
import { JsonLinesProcess, Ports } from "@understudy/testkit"
import * as fc from "fast-check"

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))
const spawn = (args: ReadonlyArray<string>) =>
  new JsonLinesProcess.JsonLinesProcess(main, args, {
    env: { SERVER_GROUP_EXIT_ON_STDIN_EOF: "1" },
  })

afterAll(async () => {
  JsonLinesProcess.killAll()
  await sleep(100)
})

interface Answer {
  readonly status: number
  readonly body: string
}

/** One raw request (node:http sends the path as given, but refuses some paths and headers). */
const send = (
  base: URL,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: string,
): Promise<Answer | "refused-by-client" | "reset-after-early-answer"> =>
  new Promise((resolve, reject) => {
    // The server answered without reading a large upload (a bad key, a refused method, a
    // DELETE) and closed: the client's write or read then fails. Anything else is a failure.
    const failed = (error: NodeJS.ErrnoException) => {
      if (body.length > 64 * 1024 && (error.code === "ECONNRESET" || error.code === "EPIPE"))
        resolve("reset-after-early-answer")
      else reject(error)
    }
    const sending = body.length > 0 && method !== "GET" && method !== "HEAD"
    let request: http.ClientRequest
    try {
      request = http.request(
        {
          host: base.hostname,
          port: base.port,
          method,
          path,
          // A body is always framed by its length (node would send a DELETE's raw).
          headers: sending
            ? { ...headers, "content-length": `${Buffer.byteLength(body)}` }
            : headers,
          timeout: 10_000,
          agent: false,
        },
        (response) => {
          const chunks: Array<Buffer> = []
          response.on("data", (chunk: Buffer) => chunks.push(chunk))
          response.on("end", () =>
            resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
          )
          response.on("error", failed)
        },
      )
    } catch {
      // Node refuses to send some paths or header values at all: nothing reached the server.
      resolve("refused-by-client")
      return
    }
    request.on("error", failed)
    request.on("timeout", () => request.destroy(new Error("timed out")))
    if (sending) request.write(body)
    request.end()
  })

const printable = fc.string({
  unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)),
})
const path = fc.oneof(
  printable.map((tail) => `/${tail}`),
  printable.map((tail) => `/kv/${tail}`),
  fc.constantFrom(
    "/kv/%",
    "/kv/%zz",
    "/kv/%E0%A4%A",
    "/kv/%FF",
    "/kv//",
    "/kv/a/b",
    "/status?x=%",
    "/kv",
    "//kv/a",
    "/\\",
    "//",
    `/kv/${"k".repeat(10_000)}`,
  ),
)
const method = fc.constantFrom("GET", "PUT", "DELETE", "POST", "PATCH", "HEAD", "OPTIONS")
const headerValue = fc.oneof(
  printable,
  fc.constantFrom("", "0", "-1", "1.5", "1e308", "NaN", "9007199254740993", "x".repeat(5_000)),
  fc.nat().map(String),
)
const headers = fc.record(
  { "x-client-id": headerValue, "x-request-id": headerValue },
  { requiredKeys: [] },
)
const body = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.constantFrom("", "x".repeat(64 * 1024), "x".repeat(64 * 1024 + 1), "y".repeat(300_000)),
)

describe("the HTTP API on bad input", () => {
  it("answers every fuzzed request with a typed status, never a 500, and loses nothing", async () => {
    const nameServer = spawn(["nameserver", "--listen", "tcp://127.0.0.1:0", "--insecure"])
    const store = (await nameServer.line("ready", 20_000)).listen as string
    const [port] = await Ports.freeUdpPorts(1)
    const proc = spawn(
      ServerGroupCommand.serve({
        id: "1",
        peers: `1=udp://127.0.0.1:${port}`,
        store,
        args: ["--insecure"],
      }),
    )
    const base = new URL((await proc.line("ready", 20_000)).http as string)
    // The single server becomes master and serves.
    let written: Awaited<ReturnType<typeof send>> = { status: 0, body: "" }
    for (let i = 0; i < 200; i++) {
      written = await send(base, "PUT", "/kv/kept", {}, "precious")
      if (typeof written !== "string" && written.status === 200) break
      await sleep(50)
    }
    expect(written).toMatchObject({ status: 200 })

    const allowed = [200, 307, 400, 404, 405, 409, 413, 503]
    let sent = 0
    await fc.assert(
      fc.asyncProperty(method, path, headers, body, async (m, p, h, b) => {
        const answer = await send(base, m, p, h, b)
        if (answer === "refused-by-client") return
        sent++
        if (answer === "reset-after-early-answer") {
          expect(await send(base, "GET", "/status", {}, "")).toMatchObject({ status: 200 })
          return
        }
        expect(
          allowed,
          `${m} ${p.slice(0, 80)} → ${answer.status} ${answer.body.slice(0, 200)}`,
        ).toContain(answer.status)
        // Nothing written under "kept" by the fuzzer: only a PUT/DELETE of /kv/kept could.
        if (m === "HEAD") return
        if (answer.body.length > 0) expect(() => JSON.parse(answer.body)).not.toThrow()
      }),
      { numRuns: 300 },
    )
    expect(sent).toBeGreaterThan(100)

    // Many distinct client ids: each write is answered.
    for (let i = 0; i < 300; i++) {
      const answer = await send(
        base,
        "PUT",
        `/kv/c${i % 7}`,
        { "x-client-id": `client-${i}`, "x-request-id": "1" },
        `${i}`,
      )
      expect(answer).toMatchObject({ status: 200 })
    }
    const kept = await send(base, "GET", "/kv/kept", {}, "")
    expect(kept).toMatchObject({ status: 200 })
    if (typeof kept !== "string") expect(JSON.parse(kept.body).value).toBe("precious")
    expect(proc.exited).toBe(false)
  }, 120_000)
})
