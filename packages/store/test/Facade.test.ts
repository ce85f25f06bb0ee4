/**
 * The Promise facade: a store served on loopback (`createStoreServer`) and a client of it
 * (`createStore`), both with the caller's logger and tracer; the in-process default; bad
 * options.
 */
import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { TestTracer } from "@understudy/testkit"
import type { Observability } from "@understudy/transport"
import type { Duration } from "effect"
import { createStore, createStoreServer } from "../src/Facade.ts"
import type { WatchEvent } from "../src/Store.ts"
import { StoreConfigError } from "../src/StoreError.ts"

const text = (value: Uint8Array | undefined) =>
  value === undefined ? undefined : new TextDecoder().decode(value)

/** Resolves once `events` holds `count` events, or rejects after `limitMs`. */
const gathered = async (events: ReadonlyArray<WatchEvent>, count: number, limitMs = 10_000) => {
  for (let waited = 0; events.length < count; waited += 10) {
    if (waited >= limitMs) throw new Error(`${events.length} of ${count} events in ${limitMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe("Facade", () => {
  it("a served store and a client with the caller's logger and tracer: compare-and-set, leases, watch", async () => {
    const clusterKey = new Uint8Array(randomBytes(32))
    const logs: Array<Observability.LogEntry> = []
    const tracer = TestTracer.make()
    const observed = {
      logger: (entry: Observability.LogEntry) => logs.push(entry),
      layer: tracer.layer,
    }
    const server = await createStoreServer({ listen: "tcp://127.0.0.1:0", clusterKey, ...observed })
    try {
      expect(server.address).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/)
      const serving = logs.find((entry) => entry.message === "store: serving")
      expect(serving?.level).toBe("Info")
      expect(serving?.annotations).toMatchObject({ address: server.address, authenticated: true })

      const store = await createStore({
        backend: { remote: server.address },
        clusterKey,
        requestTimeout: "5 seconds",
        ...observed,
      })
      try {
        const events: Array<WatchEvent> = []
        const watch = store.watch("/locks/")
        watch.on("change", (event: WatchEvent) => events.push(event))
        const deletes: Array<WatchEvent> = []
        watch.on("Delete", (event: WatchEvent) => deletes.push(event))

        const lease = await store.grantLease(1_000)
        const first = await store.put("/locks/build", "worker-1", {
          lease: lease.id,
          ifModRevision: 0,
        })
        // The Promise rejects with the store's typed error.
        await expect(
          store.put("/locks/build", new TextEncoder().encode("worker-2"), { ifModRevision: 0 }),
        ).rejects.toMatchObject({ _tag: "Conflict" })
        const held = await store.get("/locks/build")
        expect(text(held?.value)).toBe("worker-1")
        expect(held?.modRevision).toBe(first.revision)
        expect(held?.lease).toBe(lease.id)
        expect((await store.range("/locks/")).items.map((kv) => kv.key)).toEqual(["/locks/build"])
        await store.keepAlive(lease.id)
        // The holder goes: its lease and the lock with it.
        await store.revokeLease(lease.id)
        expect(await store.get("/locks/build")).toBeUndefined()
        await expect(store.keepAlive(lease.id)).rejects.toMatchObject({ _tag: "LeaseExpired" })

        await gathered(events, 2)
        expect(events.map((event) => event._tag)).toEqual(["Put", "Delete"])
        expect(events[0]!.revision).toBe(first.revision)
        expect(deletes).toEqual([events[1]])
        expect(await server.connections()).toBe(1)
        await watch.close()
        expect(await watch.done).toBeUndefined()

        // Every operation of the remote store was a span of the caller's tracer.
        const named = (name: string) => tracer.spans.filter((span) => span.name === name)
        expect(named("store.put").length).toBe(2)
        expect(named("store.put")[0]!.attributes.get("store.backend")).toBe("remote")
        expect(named("store.put")[0]!.attributes.get("store.key")).toBe("/locks/build")
        expect(named("store.get").length).toBe(2)
        expect(named("store.revoke-lease").length).toBe(1)
      } finally {
        await store.close()
      }
    } finally {
      await server.close()
    }
  })

  it("the default store is in this process", async () => {
    const store = await createStore()
    try {
      const { revision } = await store.put("/a", "1")
      expect(text((await store.get("/a"))?.value)).toBe("1")
      expect(await store.delete("/a", { ifModRevision: revision })).toMatchObject({
        deleted: true,
      })
      expect(await store.get("/a")).toBeUndefined()
    } finally {
      await store.close()
    }
  })

  it("bad options reject with StoreConfigError naming the cause", async () => {
    const rejection = (promise: Promise<unknown>) =>
      promise.then(
        () => undefined,
        (error: unknown) => error,
      )
    const unkeyed = await rejection(createStore({ backend: { remote: "tcp://127.0.0.1:1" } }))
    expect(unkeyed).toBeInstanceOf(StoreConfigError)
    expect((unkeyed as StoreConfigError).detail).toMatch(/clusterKey is required/)
    const badAddress = await rejection(
      createStore({ backend: { remote: "nonsense" }, insecure: true }),
    )
    expect((badAddress as StoreConfigError).detail).toMatch(/^backend\.remote: /)
    for (const requestTimeout of [0, -1, Number.POSITIVE_INFINITY, "soon" as Duration.Input]) {
      const badTimeout = await rejection(
        createStore({ backend: { remote: "tcp://127.0.0.1:1" }, insecure: true, requestTimeout }),
      )
      expect(badTimeout, String(requestTimeout)).toBeInstanceOf(StoreConfigError)
      expect((badTimeout as StoreConfigError).detail).toMatch(
        /^requestTimeout: not a positive duration/,
      )
    }
    const noEtcd = await rejection(createStore({ backend: { etcd: [] } }))
    expect((noEtcd as StoreConfigError).detail).toBe("backend.etcd is empty")
    const badListen = await rejection(createStoreServer({ listen: "udp://x", insecure: true }))
    expect((badListen as StoreConfigError).detail).toMatch(/^listen: /)
    const unkeyedServer = await rejection(createStoreServer({ listen: "tcp://127.0.0.1:0" }))
    expect((unkeyedServer as StoreConfigError).detail).toMatch(/clusterKey is required/)
  })
})
