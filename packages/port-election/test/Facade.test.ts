/**
 * The Promise / EventEmitter facade, for code that does not use Effect: the same election,
 * seen through `createInstance`.
 */
import { randomBytes } from "node:crypto"
import type { Observability } from "@understudy/transport"
import { Layer, Metric, Redacted, References } from "effect"
import { describe, expect, it } from "vitest"
import { createInstance, type Instance } from "../src/Facade.ts"

const secret = Redacted.make(new Uint8Array(randomBytes(32)))

const join = (address: string) =>
  createInstance({
    program: "facade-test",
    address,
    secret,
    keepAlive: { interval: 100, timeout: 600 },
    grace: 300,
  })

/** The next event of `tag` on `instance`, bounded in time. */
const next = (instance: Instance, tag: string, timeoutMs = 5_000) =>
  new Promise<unknown>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${tag} within ${timeoutMs} ms`)), timeoutMs)
    instance.once(tag, (event) => {
      clearTimeout(timer)
      resolve(event)
    })
  })

describe("createInstance: Promises and events", () => {
  it("elects, serves requests and commands, grants a mutex in turn, and hands over on close", async () => {
    const address = `unix://@understudy-facade-${randomBytes(6).toString("hex")}`
    const first = await join(address)
    const second = await join(address)
    try {
      expect(first.role()._tag).toBe("Supervisor")
      expect(second.role()).toEqual({ _tag: "Subordinate", supervisorId: first.instanceId })
      expect((await first.members()).map((m) => m.instanceId).sort()).toEqual(
        [first.instanceId, second.instanceId].sort(),
      )

      first.serve("echo", (payload, from) => ({ payload, from }))
      expect(await second.request("echo", { n: 1 })).toEqual({
        payload: { n: 1 },
        from: second.instanceId,
      })
      second.onCommand("ping", (payload) => `pong ${String(payload)}`)
      const answers = await first.command(second.instanceId, "ping", 7)
      expect(answers).toEqual([{ instanceId: second.instanceId, ok: true, payload: "pong 7" }])

      // The mutex: the second waits while the first holds it, and gets it on release.
      const release = await first.acquire("lock")
      let granted = false
      const waiting = second.acquire("lock").then((releaseSecond) => {
        granted = true
        return releaseSecond
      })
      // A round trip through the supervisor after the request: it is queued by now.
      await second.request("echo", null)
      expect(granted).toBe(false)
      await release()
      const releaseSecond = await waiting
      expect(granted).toBe(true)
      await releaseSecond()

      // A supervisor that closes hands over at once: the other is elected.
      const elected = next(second, "Elected")
      await first.close()
      expect(await elected).toMatchObject({ _tag: "Elected", instanceId: second.instanceId })
      expect(second.role()._tag).toBe("Supervisor")
    } finally {
      await first.close()
      await second.close()
    }
  }, 30_000)

  it("runs with the caller's logger and layers: its log lines and metrics go where they say", async () => {
    const address = `unix://@understudy-facade-${randomBytes(6).toString("hex")}`
    const entries: Array<Observability.LogEntry> = []
    const registry = new Map()
    const instance = await createInstance({
      program: "facade-test",
      address,
      secret,
      logger: (entry) => entries.push(entry),
      // Debug lines too, and metrics in a registry of the caller's own.
      layer: Layer.mergeAll(
        Layer.succeed(References.MinimumLogLevel, "Debug"),
        Layer.succeed(Metric.MetricRegistry, registry),
      ),
    })
    try {
      expect(instance.role()._tag).toBe("Supervisor")
      const elected = entries.find((entry) => entry.message === "elected")
      expect(elected?.level).toBe("Debug")
      expect(elected?.annotations).toMatchObject({
        instanceId: instance.instanceId,
        role: "supervisor",
        // Its first attempt at a role: the term every line of it is annotated with.
        epoch: 1,
      })
      // The registry's keys are the metrics' descriptions (type, name, description, labels).
      expect([...registry.keys()].join()).toContain('"understudy_port_election_elections_total"')
    } finally {
      await instance.close()
    }
  })

  it("rejects an address it cannot parse", async () => {
    await expect(join("carrier-pigeon://nowhere")).rejects.toMatchObject({
      _tag: "InvalidAddress",
    })
  })
})
