/**
 * `serve --cluster-key FILE`: servers with the group's key elect and serve; a server with
 * another key is not heard by them; a key file others could read is refused at start. The
 * HTTP API of a keyed group answers /kv requests only with the token derived from the key
 * (401 `Unauthorized` without it or with another key's), across redirects.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { JsonLinesProcess, Ports } from "@understudy/testkit"
import { ClusterKey } from "@understudy/transport"
import { Effect, Redacted } from "effect"
import { apiToken, tokenHeader } from "../src/common.ts"

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))
const spawn = (args: ReadonlyArray<string>) =>
  new JsonLinesProcess.JsonLinesProcess(main, args, {
    env: { SERVER_GROUP_EXIT_ON_STDIN_EOF: "1" },
  })
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

afterAll(async () => {
  JsonLinesProcess.killAll()
  await sleep(100)
})

describe("keygen", () => {
  it("writes a new key, mode 0600, that serve reads; it never replaces a key", async () => {
    const dir = mkdtempSync(join(tmpdir(), "understudy-keygen-"))
    try {
      const out = join(dir, "keys", "group.key")
      const first = spawn(["keygen", "--out", out])
      expect((await first.line("key", 20_000)).path).toBe(out)
      expect(statSync(out).mode & 0o777).toBe(0o600)
      const key = readFileSync(out, "utf8")
      expect(await Effect.runPromise(Effect.map(ClusterKey.readFile(out), () => true))).toBe(true)
      const second = spawn(["keygen", "--out", out])
      await expect(second.line("key", 10_000)).rejects.toThrow()
      expect(readFileSync(out, "utf8")).toBe(key)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})

describe("serve --cluster-key", () => {
  it("keyed servers serve; one with another key is not heard; a readable key file is refused", async () => {
    const dir = mkdtempSync(join(tmpdir(), "understudy-cluster-key-"))
    try {
      const key = join(dir, "group.key")
      const other = join(dir, "other.key")
      await Effect.runPromise(ClusterKey.generateFile(key))
      await Effect.runPromise(ClusterKey.generateFile(other))
      const nameServer = spawn(["nameserver", "--listen", "tcp://127.0.0.1:0"])
      const store = (await nameServer.line("ready", 60_000)).listen as string
      const ports = await Ports.freeUdpPorts(3)
      const peers = ["1", "2", "3"]
        .map((id, i) => `${id}=udp://127.0.0.1:${ports[i]}?cpu=${10 - i}&bw=100`)
        .join(",")
      const serve = (id: string, keyFile: string) =>
        spawn([
          "serve",
          "--id",
          id,
          "--peers",
          peers,
          "--http",
          "127.0.0.1:0",
          "--store",
          store,
          "--cluster-key",
          keyFile,
        ])
      const token = apiToken(Redacted.value(await Effect.runPromise(ClusterKey.readFile(key))))
      const wrong = apiToken(Redacted.value(await Effect.runPromise(ClusterKey.readFile(other))))
      const [one, two, three] = [serve("1", key), serve("2", key), serve("3", other)]
      const urls = await Promise.all(
        [one, two, three].map(async (proc) => (await proc.line("ready", 60_000)).http as string),
      )
      let status = 0
      for (let i = 0; i < 200 && status !== 200; i++) {
        const response = await fetch(`${urls[0]}/kv/k`, {
          method: "PUT",
          body: "keyed",
          redirect: "follow",
          headers: { [tokenHeader]: token },
        }).catch(() => undefined)
        status = response?.status ?? 0
        await response?.body?.cancel()
        if (status !== 200) await sleep(50)
      }
      expect(status).toBe(200)
      const read = await fetch(`${urls[1]}/kv/k`, {
        redirect: "follow",
        headers: { [tokenHeader]: token },
      })
      expect(await read.json()).toEqual({ key: "k", value: "keyed" })
      // Without the token, or with another key's, nothing is read or written.
      for (const headers of [{}, { [tokenHeader]: wrong }, { [tokenHeader]: "" }]) {
        for (const method of ["GET", "PUT"]) {
          const refused = await fetch(`${urls[0]}/kv/k`, {
            method,
            headers,
            redirect: "manual",
            ...(method === "PUT" ? { body: "forged" } : {}),
          })
          expect(refused.status).toBe(401)
          expect(await refused.json()).toMatchObject({ error: "Unauthorized" })
        }
      }
      const after = await fetch(`${urls[0]}/kv/k`, {
        redirect: "follow",
        headers: { [tokenHeader]: token },
      })
      expect(await after.json()).toEqual({ key: "k", value: "keyed" })
      // Server 3's datagrams fail the MAC: 1 and 2 never hear it, it never follows their master.
      const statuses = await Promise.all(
        urls.map((url) =>
          Ports.getJson<{ master: string | null; role: string }>(`${url}/status`, 2_000),
        ),
      )
      const master = statuses[0]!.master
      expect(["1", "2"]).toContain(master)
      expect(statuses[2]!.master).not.toBe(master)
      // A key file others may read is refused: the server exits with an error.
      chmodSync(other, 0o644)
      const refused = serve("3", other)
      await expect(refused.line("ready", 10_000)).rejects.toThrow()
      expect(refused.exited).toBe(true)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 180_000)
})
