/**
 * A server's durable state over a restart, with real UDP on loopback: a newer license file
 * published to it is on disk (written through a temporary file, none left behind) before it
 * answers, and the restarted server keeps it over the older file it is given again.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { NodeDatagram } from "@understudy/transport"
import { Effect } from "effect"
import { afterAll } from "vitest"
import * as Admin from "../src/Admin.ts"
import type * as Message from "../src/Message.ts"
import * as Server from "../src/Server.ts"
import { loopbackPool } from "./support/loopbackPool.ts"

const dir = mkdtempSync(join(tmpdir(), "heartbeat-pool-durable-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe("durable state", () => {
  it.live(
    "a license published to a server is on disk before it answers, and survives its restart",
    () =>
      Effect.gen(function* () {
        const { member, poolSecret, server, license } = yield* loopbackPool
        const licenseOf = (sequence: number) => license(10 + sequence, sequence)
        const serve = (license: Message.License) =>
          Server.run({
            ...server,
            stateDir: dir,
            license,
          })
        yield* Effect.scoped(
          Effect.gen(function* () {
            const server = yield* serve(licenseOf(1))
            expect((yield* server.state).durable.license?.sequence).toBe(1)
            const replies = yield* Admin.ask(
              [{ id: "s1", address: member.client }],
              { _tag: "Publish", license: licenseOf(2) },
              poolSecret,
              30_000,
            )
            expect(replies.get("s1")).toMatchObject({ accepted: true, sequence: 2 })
            // Written before the answer went out.
            const stored = JSON.parse(readFileSync(join(dir, "s1.state.json"), "utf8"))
            expect(stored.license).toMatchObject({ sequence: 2 })
          }),
        )
        expect(readdirSync(dir)).toEqual(["s1.state.json"])
        // Restarted with the older file again: the newer one from disk wins.
        yield* Effect.scoped(
          Effect.gen(function* () {
            const server = yield* serve(licenseOf(1))
            expect((yield* server.state).durable.license).toMatchObject({ sequence: 2, seats: 12 })
          }),
        )
      }).pipe(Effect.provide(NodeDatagram.layer)),
    60_000,
  )
})
