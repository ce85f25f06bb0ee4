/**
 * `serve --cluster-key FILE`: servers with the group's key elect and serve; a server with
 * another key is not heard by them; a key file others could read is refused at start. The
 * HTTP API of a keyed group answers /kv requests only with the token derived from the key
 * (401 `Unauthorized` without it or with another key's), across redirects. The name server
 * started with the key serves only clients that prove it: an unkeyed or wrong-keyed client
 * can neither put a holder (redirecting the group's clients) nor read one.
 * `nameserver` with neither a key nor `--insecure` refuses to start.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { ServerGroupCommand } from "@understudy/app-kit"
import { ServerGroup } from "@understudy/staggered-election"
import { NameServer, RemoteStore } from "@understudy/store"
import { JsonLinesProcess, Ports } from "@understudy/testkit"
import { Address, ClusterKey, NodeTransport } from "@understudy/transport"
import { Effect, Layer, Option, Redacted } from "effect"
import { apiToken, tokenHeader } from "../src/common.ts"

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))
const spawn = (args: ReadonlyArray<string>) =>
  new JsonLinesProcess.JsonLinesProcess(main, args, {
    env: { SERVER_GROUP_EXIT_ON_STDIN_EOF: "1" },
  })

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

/**
 * What a client of the name server at `store` gets, with `key` (`undefined`: no key), in this
 * process: when it tries to register `forged` (if given) as the group's master at an epoch
 * above any real one, then to resolve the group's master.
 */
const tryForge = (
  store: string,
  key: Redacted.Redacted<Uint8Array> | undefined,
  forged: string | undefined,
) => {
  const address = Address.parseStream(store)
  if (address instanceof Address.InvalidAddress) throw new Error(address.reason)
  return Effect.gen(function* () {
    const names = yield* NameServer.NameServer
    const registered =
      forged === undefined
        ? undefined
        : (yield* Effect.result(names.register("kv", forged, 1_000_000_000, { ttl: 60_000 })))._tag
    const resolved = yield* Effect.result(names.resolve("kv"))
    return { registered, resolved }
  }).pipe(
    Effect.scoped,
    Effect.provide(
      NameServer.layer.pipe(
        Layer.provide(
          RemoteStore.layer({
            address,
            requestTimeout: 1_000,
            ...(key === undefined ? {} : { clusterKey: key }),
          }),
        ),
        Layer.provide(NodeTransport.layer),
      ),
    ),
    Effect.runPromise,
  )
}

describe("nameserver --cluster-key | --insecure", () => {
  it("refuses to start with neither; --insecure warns", async () => {
    const neither = spawn(["nameserver", "--listen", "tcp://127.0.0.1:0"])
    const insecure = spawn(["nameserver", "--listen", "tcp://127.0.0.1:0", "--insecure"])
    await neither.exit()
    expect(neither.child.exitCode).toBe(2)
    expect(neither.stderr).toMatch(/--cluster-key FILE.*--insecure/)
    expect((await insecure.line("ready", 60_000)).authenticated).toBe(false)
    expect(insecure.stderr).toMatch(/WARNING: --insecure/)
    insecure.kill("SIGTERM")
    await insecure.exit()
  }, 90_000)
})

describe("serve --cluster-key", () => {
  it("keyed servers serve; one with another key is not heard; a readable key file is refused", async () => {
    const dir = mkdtempSync(join(tmpdir(), "understudy-cluster-key-"))
    try {
      const key = join(dir, "group.key")
      const other = join(dir, "other.key")
      await Effect.runPromise(ClusterKey.generateFile(key))
      await Effect.runPromise(ClusterKey.generateFile(other))
      const nameServer = spawn([
        "nameserver",
        "--listen",
        "tcp://127.0.0.1:0",
        "--cluster-key",
        key,
      ])
      const ready = await nameServer.line("ready", 60_000)
      expect(ready.authenticated).toBe(true)
      const store = ready.listen as string
      const ports = await Ports.freeUdpPorts(3)
      const peers = ServerGroupCommand.peers(
        ["1", "2", "3"].map((id, i) => ({ id, port: ports[i]!, cpu: 10 - i, bandwidthMbps: 100 })),
      )
      const serve = (id: string, keyFile: string) =>
        spawn(ServerGroupCommand.serve({ id, peers, store, args: ["--cluster-key", keyFile] }))
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
      // The name server: a client without the key, or with another key, cannot register a
      // holder (at an epoch above the master's) nor read one; the master stays registered.
      const forged = "evil=http://127.0.0.1:9"
      const keyBytes = await Effect.runPromise(ClusterKey.readFile(key))
      const otherBytes = await Effect.runPromise(ClusterKey.readFile(other))
      for (const attempt of [undefined, otherBytes]) {
        const outcome = await tryForge(store, attempt, forged)
        expect(outcome.registered).toBe("Failure")
        expect(outcome.resolved._tag).toBe("Failure")
      }
      const keyed = await tryForge(store, keyBytes, undefined)
      if (keyed.resolved._tag !== "Success") throw new Error("the keyed client could not resolve")
      const holder = Option.getOrUndefined(keyed.resolved.success)
      expect(holder === undefined ? undefined : ServerGroup.parseHolder(holder.holder).id).toBe(
        master,
      )
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
