/**
 * `server-group serve --store etcd://HOST:PORT`: a real etcd (Debian `etcd-server`) on free
 * loopback ports with a temporary data dir; one server registers its mastership there and
 * answers writes and reads.
 */

import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { ServerGroupCommand } from "@understudy/app-kit"
import { EtcdServer, JsonLinesProcess, Ports } from "@understudy/testkit"

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))

afterAll(async () => {
  JsonLinesProcess.killAll()
  await sleep(100)
})

describe("server-group on etcd", () => {
  it("registers in etcd and serves writes and linearizable reads", async () => {
    const etcd = await EtcdServer.startEtcd()
    try {
      const [port] = await Ports.freeUdpPorts(1)
      const proc = new JsonLinesProcess.JsonLinesProcess(
        main,
        ServerGroupCommand.serve({
          id: "1",
          peers: `1=udp://127.0.0.1:${port}`,
          store: etcd.endpoint.replace("http://", "etcd://"),
          args: ["--insecure"],
        }),
        { env: { SERVER_GROUP_EXIT_ON_STDIN_EOF: "1" } },
      )
      const http = (await proc.line("ready", 20_000)).http as string
      let status = 0
      for (let i = 0; i < 200 && status !== 200; i++) {
        const response = await fetch(`${http}/kv/k`, { method: "PUT", body: "on-etcd" })
        status = response.status
        await response.body?.cancel()
        if (status !== 200) await sleep(50)
      }
      expect(status).toBe(200)
      const read = await fetch(`${http}/kv/k`)
      expect(await read.json()).toEqual({ key: "k", value: "on-etcd" })
      expect((await proc.line("event", 1_000))._tag).toBeDefined()
      expect(proc.lines.some((line) => line._tag === "Registered")).toBe(true)
    } finally {
      await etcd.stop()
    }
  }, 60_000)
})
