import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { program as portElection } from "../examples/port-election.ts"
import { program as sctpCluster } from "../examples/sctp-cluster.ts"
import { program as serverGroup } from "../examples/server-group.ts"
import { program as storeLock } from "../examples/store-lock.ts"
import { program as transportEcho } from "../examples/transport-echo.ts"

describe("documentation examples run and do what the docs say", () => {
  it.live("transport-echo: the server upper-cases, the client closes locally", () =>
    Effect.gen(function* () {
      const result = yield* transportEcho
      expect(result.reply).toEqual({ from: "server", text: "HELLO" })
      expect(result.closed).toBe("LocalClose")
    }),
  )

  it.live("store-lock: the second claim is refused; the watch sees put then delete", () =>
    Effect.gen(function* () {
      const result = yield* storeLock
      expect(result.secondRefused).toBe(true)
      expect(result.events).toEqual(["Put", "Delete"])
    }),
  )

  it.live("port-election: one supervisor, and a survivor takes over", () =>
    Effect.gen(function* () {
      const result = yield* portElection
      expect(result.rolesBefore).toEqual(["Supervisor", "Subordinate", "Subordinate"])
      expect(result.winnerElected).toBe(true)
      expect(result.rolesAfter).toEqual(["Subordinate", "Supervisor"])
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
