/**
 * A server's durable state as a snapshot and a journal (`internal/stateFiles.ts`): what a
 * step changes is appended, the whole state written only when the term, vote or license
 * changed or the journal outgrew the snapshot; restoring replays the journal over the
 * snapshot, and a crash at any point (SIGKILL of a writing process) leaves every change that
 * was acted on.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Machine as M } from "@understudy/machine"
import { JsonLinesProcess as Jl } from "@understudy/testkit"
import { HashMap } from "effect"
import { afterAll } from "vitest"
import * as StateFiles from "../src/internal/stateFiles.ts"
import * as Machine from "../src/Machine.ts"
import type * as Message from "../src/Message.ts"
import { electedLeader, fakeCrypto, license, timing } from "./support/sim.ts"

const root = mkdtempSync(join(tmpdir(), "heartbeat-pool-state-files-"))
afterAll(() => {
  Jl.killAll()
  rmSync(root, { recursive: true, force: true })
})
let dirs = 0
const freshPath = () => join(root, `${dirs++}`, "s1.state.json")

const allocation = (client: string, seats = 1): Message.Allocation => ({
  client,
  seats,
  grantedAtMs: 10,
  expiresAtMs: 2_010,
})
const empty: StateFiles.Restored = { term: 1, votedFor: "s1", license: null, record: [] }
const clients = (restored: StateFiles.Restored | undefined) =>
  restored?.record.map((entry) => entry.client).sort()

const pool = Machine.make({
  servers: ["s1", "s2", "s3"],
  ...timing,
  crypto: fakeCrypto,
  initialLicense: license(10),
  shareSeatsMax: 0,
})
const request = (client: string, nowMs = 3_000) =>
  M.command<Machine.Command>(
    {
      _tag: "FromClient",
      from: client,
      message: { _tag: "Request", client, seq: 1, product: "cad", seats: 1 },
    },
    nowMs,
  )

describe("state files", () => {
  it("a step that grants or releases appends what changed; the snapshot is written only when the term, vote or license changed", () => {
    const path = freshPath()
    const files = StateFiles.open(path)
    expect(files.restored).toBeUndefined()
    let state = electedLeader(pool)
    StateFiles.persistStep(files, undefined, state)
    const snapshot = readFileSync(path, "utf8")
    const journal = () => readFileSync(`${path}.journal`, "utf8")
    // Two grants in one step: two lines, the snapshot untouched.
    let before = state
    state = pool.step(pool.step(state, request("a")).state, request("b")).state
    StateFiles.persistStep(files, before, state)
    expect(readFileSync(path, "utf8")).toBe(snapshot)
    expect(
      journal()
        .split("\n")
        .filter(Boolean)
        .map((line) => JSON.parse(line)),
    ).toEqual([
      { set: { client: "b", seats: 1, grantedAtMs: 3_000, expiresAtMs: 3_000 + timing.leaseMs } },
      { set: { client: "a", seats: 1, grantedAtMs: 3_000, expiresAtMs: 3_000 + timing.leaseMs } },
    ])
    // A release: one line.
    before = state
    state = pool.step(
      state,
      M.command<Machine.Command>(
        { _tag: "FromClient", from: "a", message: { _tag: "Release", client: "a", seq: 2 } },
        3_001,
      ),
    ).state
    StateFiles.persistStep(files, before, state)
    expect(journal().split("\n").at(-2)).toBe(JSON.stringify({ drop: "a" }))
    expect(clients(StateFiles.open(path).restored)).toEqual(["b"])
    // A newer term: the whole state, the journal emptied.
    before = state
    state = pool.step(state, M.receive("s2", { _tag: "Newer", term: 7 }, 3_002)).state
    expect(state.durable.term).toBe(7)
    StateFiles.persistStep(files, before, state)
    expect(journal()).toBe("")
    expect(JSON.parse(readFileSync(path, "utf8"))).toMatchObject({
      term: 7,
      record: [{ client: "b" }],
    })
    files.close()
  })

  it("restores the snapshot with the journal replayed; a torn last line is ignored, a bad line before it is an error", () => {
    const path = freshPath()
    const files = StateFiles.open(path)
    files.snapshot({ ...empty, record: [allocation("a"), allocation("b")] })
    files.append([{ set: allocation("c") }, { drop: "a" }, { set: allocation("b", 3) }], () => {
      throw new Error("not compacted yet")
    })
    files.close()
    const restored = StateFiles.open(path).restored
    expect(restored?.record).toEqual([allocation("b", 3), allocation("c")])
    // A crash during an append: part of a line, from a step whose outputs never acted.
    writeFileSync(`${path}.journal`, `${readFileSync(`${path}.journal`, "utf8")}{"set":{"cli`)
    expect(clients(StateFiles.open(path).restored)).toEqual(["b", "c"])
    // Damage before the last line is not a crash: refused, never read as something else.
    writeFileSync(`${path}.journal`, `{"set":{"cli\n${JSON.stringify({ drop: "b" })}\n`)
    expect(() => StateFiles.open(path)).toThrow(/line 1/)
  })

  it("compacts: past its bound the journal becomes the snapshot; lines the snapshot holds already replay to the same state", () => {
    const path = freshPath()
    const files = StateFiles.open(path)
    files.snapshot(empty)
    const record = new Map<string, Message.Allocation>()
    const whole = () => ({ ...empty, record: Array.from(record.values()) })
    let compacted = 0
    // 300 steps of 8 changes (about 200 KiB of lines, past the 64 KiB floor).
    for (let index = 0; index < 2_400; index += 8) {
      const lines: Array<StateFiles.Line> = []
      for (let change = index; change < index + 8; change++) {
        const client = `c${change % 300}`
        const line: StateFiles.Line =
          change % 3 === 2 ? { drop: client } : { set: allocation(client, 1 + (change % 5)) }
        if ("set" in line) record.set(client, line.set)
        else record.delete(client)
        lines.push(line)
      }
      const sizeBefore = statSync(`${path}.journal`, { throwIfNoEntry: false })?.size ?? 0
      files.append(lines, whole)
      if (statSync(`${path}.journal`).size < sizeBefore) compacted++
    }
    expect(compacted).toBeGreaterThan(0)
    // Bounded: at most the floor (64 KiB) or four snapshots, and one more line.
    const snapshotBytes = statSync(path).size
    expect(statSync(`${path}.journal`).size).toBeLessThanOrEqual(
      Math.max(64 * 1024, 4 * snapshotBytes) + 200,
    )
    const byClient = (entries: ReadonlyArray<Message.Allocation> | undefined) =>
      [...(entries ?? [])].sort((a, b) => a.client.localeCompare(b.client))
    expect(byClient(StateFiles.open(path).restored?.record)).toEqual(byClient(whole().record))
    // A crash after the snapshot's rename, before the journal's truncation: the old lines
    // replay over a snapshot that holds them already, to the same state.
    const journal = readFileSync(`${path}.journal`, "utf8")
    files.snapshot(whole())
    writeFileSync(`${path}.journal`, journal)
    expect(byClient(StateFiles.open(path).restored?.record)).toEqual(byClient(whole().record))
    files.close()
  })

  it("storedSince lists the clients changed since a count of stored changes, or says they are no longer all listed", () => {
    let state = electedLeader(pool)
    const since = state.stored
    for (const client of ["a", "b", "c"]) state = pool.step(state, request(client)).state
    expect(Machine.storedSince(state, since)).toEqual(["c", "b", "a"])
    expect(Machine.storedSince(state, since + 2)).toEqual(["c"])
    expect(Machine.storedSince(state, state.stored)).toEqual([])
    expect(Machine.storedSince(state, state.stored + 1)).toBeUndefined()
    // Past the changes kept, the oldest are forgotten: the driver then writes everything.
    const many = Machine.make({
      servers: ["s1", "s2", "s3"],
      ...timing,
      crypto: fakeCrypto,
      initialLicense: license(100_000),
      shareSeatsMax: 0,
    })
    let big = electedLeader(many)
    const start = big.stored
    const count = 2 * Machine.storedChangesKept + 10
    for (let index = 0; index < count; index++) big = many.step(big, request(`c${index}`)).state
    expect(Machine.storedSince(big, start)).toBeUndefined()
    expect(Machine.storedSince(big, big.stored - Machine.storedChangesKept)).toHaveLength(
      Machine.storedChangesKept,
    )
  })

  it.each([10, 300])(
    "SIGKILL of a writing process (after %i steps): every seat it acted on is restored, and counted by the restarted server",
    async (steps) => {
      const path = freshPath()
      const writer = new Jl.JsonLinesProcess(join(import.meta.dirname, "fixtures/grantWriter.ts"), [
        path,
      ])
      await writer.line("ready", 60_000)
      for (let waited = 0; writer.lines.length <= 2 * steps && !writer.exited; waited += 5) {
        if (waited > 120_000) throw new Error(`only ${writer.lines.length} steps in 120 s`)
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
      writer.kill("SIGKILL")
      await writer.exit()
      expect(writer.stderr).toBe("")
      // What the writer acted on: granted, and not given back since (a release may be on disk
      // without its answer: the client asked for it).
      const acted = new Set<string>()
      for (const line of writer.lines) {
        const clients = line.clients as Array<string>
        if (line.t === "granted") for (const client of clients) acted.add(client)
        if (line.t === "releasing") for (const client of clients) acted.delete(client)
      }
      expect(acted.size).toBeGreaterThan(0)
      const restored = StateFiles.open(path).restored
      const onDisk = new Set(restored?.record.map((entry) => entry.client))
      expect([...acted].filter((client) => !onDisk.has(client))).toEqual([])
      // Restarted with it, the server counts each of them a full lease: none is granted again.
      const restarted = Machine.make({
        servers: ["s1", "s2", "s3"],
        ...timing,
        crypto: fakeCrypto,
        initialLicense: license(1_000_000),
        durable: () => restored,
      }).init({ self: "s1", peers: ["s2", "s3"], nowMs: 50_000 }).state
      for (const client of acted) expect(HashMap.has(restarted.record, client)).toBe(true)
      expect(Machine.seatsHeld(restarted, 50_000 + timing.leaseMs - 1)).toBeGreaterThanOrEqual(
        acted.size,
      )
    },
    180_000,
  )
})
