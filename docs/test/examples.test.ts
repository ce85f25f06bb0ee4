import { describe, expect, it } from "@effect/vitest"
import { MemoryStore, StoreServer } from "@understudy/store"
import { EtcdServer } from "@understudy/testkit"
import { Address, NodeTransport } from "@understudy/transport"
import { Effect, Layer, Option } from "effect"
import { program as checkpoint } from "../examples/checkpoint.ts"
import { main as checkpointPromise } from "../examples/checkpoint-promise.ts"
import { onEmbeddedStore, onEtcd } from "../examples/deployment-stores.ts"
import { program as heartbeatPool } from "../examples/heartbeat-pool.ts"
import { main as heartbeatPoolGroup } from "../examples/heartbeat-pool-group.ts"
import { main as heartbeatPoolPromise } from "../examples/heartbeat-pool-promise.ts"
import { main as heartbeatPoolResource } from "../examples/heartbeat-pool-resource.ts"
import { program as machine } from "../examples/machine.ts"
import { main as machinePlain } from "../examples/machine-plain.ts"
import { program as machineRunner } from "../examples/machine-runner.ts"
import { main as multihomePromise } from "../examples/multihome-promise.ts"
import { program as observability } from "../examples/observability.ts"
import { program as portElection } from "../examples/port-election.ts"
import { main as portElectionPromise } from "../examples/port-election-promise.ts"
import { program as sctpCluster } from "../examples/sctp-cluster.ts"
import { program as serverGroup } from "../examples/server-group.ts"
import { main as serverGroupPromise } from "../examples/server-group-promise.ts"
import { program as storeLock } from "../examples/store-lock.ts"
import { main as storeLockPromise } from "../examples/store-lock-promise.ts"
import { program as transportEcho } from "../examples/transport-echo.ts"
import { main as transportEchoPromise } from "../examples/transport-echo-promise.ts"

describe("documentation examples run and do what the docs say", () => {
  it.live("transport-echo: the server upper-cases, the client closes locally", () =>
    Effect.gen(function* () {
      const result = yield* transportEcho
      expect(result.reply).toEqual({ from: "server", text: "HELLO" })
      expect(result.closed).toBe("LocalClose")
    }),
  )

  it("transport-echo, Promise style: the same reply and close reason, from async code", async () => {
    const result = await transportEchoPromise()
    expect(result.reply).toEqual({ from: "server", text: "HELLO" })
    expect(result.closed).toBe("LocalClose")
  })

  it.live("store-lock: the second claim is refused; the watch sees put then delete", () =>
    Effect.gen(function* () {
      const result = yield* storeLock
      expect(result.secondRefused).toBe(true)
      expect(result.events).toEqual(["Put", "Delete"])
    }),
  )

  it.live("deployment-stores: the same program finds its master on the embedded store", () =>
    Effect.gen(function* () {
      const server = yield* StoreServer.serve(Address.tcp("127.0.0.1", 0))
      const master = yield* onEmbeddedStore(server.address)
      expect(master).toEqual(Option.some("server-1 at epoch 1"))
    }).pipe(Effect.scoped, Effect.provide(Layer.merge(MemoryStore.layer, NodeTransport.layer))),
  )

  it.live(
    "deployment-stores: the same program finds its master on etcd",
    () =>
      Effect.gen(function* () {
        const etcd = yield* EtcdServer.etcdServer
        const master = yield* onEtcd([etcd.endpoint])
        expect(master).toEqual(Option.some("server-1 at epoch 1"))
      }).pipe(Effect.scoped),
    30_000,
  )

  it("store-lock, Promise style: the second claim rejects with Conflict; the lock goes with its lease", async () => {
    expect(await storeLockPromise()).toEqual({ second: "Conflict", lockedAfter: false })
  })

  it.live("port-election: one supervisor, and a survivor takes over", () =>
    Effect.gen(function* () {
      const result = yield* portElection
      expect(result.rolesBefore).toEqual(["Supervisor", "Subordinate", "Subordinate"])
      expect(result.winnerElected).toBe(true)
      expect(result.rolesAfter).toEqual(["Subordinate", "Supervisor"])
    }),
  )

  it("port-election, Promise style: one supervisor, then a survivor is elected", async () => {
    const result = await portElectionPromise()
    expect(result.rolesBefore).toEqual(["Supervisor", "Subordinate", "Subordinate"])
    expect([2, 3]).toContain(result.newSupervisor)
  })

  it.live(
    "heartbeat-pool: a seat is granted, and kept by another server when its server stops",
    () =>
      Effect.gen(function* () {
        const result = yield* heartbeatPool
        expect(["s1", "s2", "s3"]).toContain(result.grantedBy)
        expect(["s1", "s2", "s3"]).toContain(result.reattachedTo)
        expect(result.reattachedTo).not.toBe(result.grantedBy)
      }),
  )

  it("heartbeat-pool, Promise style: the only seat is granted once, the second client denied", async () => {
    const result = await heartbeatPoolPromise()
    expect(["s1", "s2", "s3"]).toContain(result.firstGrantedBy)
    expect(result.secondDenied).toBe("capacity")
  })

  it("heartbeat-pool, many clients in one process: every client of the group granted its seat", async () => {
    const result = await heartbeatPoolGroup()
    expect(result.granted).toBe(20)
    for (const server of result.by) expect(["s1", "s2", "s3"]).toContain(server)
  })

  it("heartbeat-pool, a resource defined in code: two slots granted, the third worker denied until one is given back", async () => {
    const result = await heartbeatPoolResource()
    expect(result.thirdDenied).toBe("capacity")
    expect(["s1", "s2", "s3"]).toContain(result.thirdGrantedBy)
  })

  it.live("checkpoint: the owner writes its second generation, with the app layer's block", () =>
    Effect.gen(function* () {
      const result = yield* checkpoint
      expect(result.generation).toBe(2)
      expect(result.layers).toEqual(["app"])
    }),
  )

  it("checkpoint, Promise style: a download rides through its server's close, every byte once", async () => {
    const result = await checkpointPromise()
    expect(result.intact).toBe(true)
    expect(result.resumed).toBe(1)
    expect(result.takenOverBy).toEqual(["b"])
  })

  it.live("observability: the survivor's metrics show one failover, as a supervisor", () =>
    Effect.gen(function* () {
      const lines = yield* observability
      expect(lines).toEqual(['understudy_port_election_failover_ms_count{role="supervisor"} 1'])
    }),
  )

  it.effect("machine: a silent peer is suspected when its time-out timer fires", () =>
    Effect.gen(function* () {
      const result = yield* machine
      expect(result.suspected).toEqual(["b"])
      expect(result.events).toEqual(["Suspected"])
    }),
  )

  it("machine, without Effect: the same suspicion, stepped by plain function calls", () => {
    expect(machinePlain()).toEqual({ suspected: ["b"], events: ["Suspected"] })
  })

  it.live("machine-runner: two nodes on a simulated network; b's host crashes, a suspects b", () =>
    Effect.gen(function* () {
      expect(yield* machineRunner).toBe("a suspects b")
    }),
  )

  it.live("server-group: the most capable server is master; a survivor keeps the write", () =>
    Effect.gen(function* () {
      const result = yield* serverGroup
      expect(result.firstMaster).toBe("large")
      expect(result.written).toBe(5)
      expect(result.secondMaster).toBe("medium")
      expect(result.after).toBe(6)
    }),
  )

  it("server-group, Promise style: the most capable server is master; a survivor keeps the write", async () => {
    const result = await serverGroupPromise()
    expect(result.firstMaster).toBe("large")
    expect(result.written).toBe(5)
    expect(result.secondMaster).toBe("medium")
    expect(result.after).toBe(6)
    expect(result.state).toEqual({ hits: 6 })
    // Through the logger it was given, not the console.
    expect(result.declared[0]).toBe("large")
    expect(result.declared).toContain("medium")
  })

  it("multihome, Promise style: each message answered in order, then a graceful shutdown", async () => {
    const result = await multihomePromise()
    expect(result.answers).toEqual(["ONE", "TWO", "THREE"])
    expect(result.closed).toBe("ShutdownComplete")
  })

  it.live("sctp-cluster: every message echoed once, across the primary's death", () =>
    Effect.gen(function* () {
      const result = yield* sctpCluster
      expect(result.echoed).toEqual(Array.from({ length: 20 }, (_, index) => `message ${index}`))
      expect(result.clientPaths).toEqual(["127.0.0.2", "127.0.0.3"])
      expect(result.clientState).toBe("Established")
      expect(result.secondaryRole).toBe("active-secondary")
    }),
  )
})
