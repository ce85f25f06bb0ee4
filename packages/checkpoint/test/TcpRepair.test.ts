/**
 * The `tcp-repair` backend with real hosts: network namespaces (client, host A, host B on
 * one bridge), an unmodified curl or wget downloading from A, A's death (link down, then
 * SIGKILL: its kernel sends no FIN or RST), B taking the connection over from A's
 * checkpoint. Root only; elsewhere the availability test still runs.
 *
 * UNDERSTUDY_TCP_REPAIR_TAKEOVERS sets how many curl takeovers run (CI: 5).
 */
import { spawnSync } from "node:child_process"
import { randomInt } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { NetNs } from "@understudy/testkit"
import { Effect, Exit } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as TcpRepair from "../src/TcpRepair.ts"
import { hostScript, prefix, sha256, takeoverRun } from "./TcpRepairLab.ts"

const curlTakeovers = Number(process.env.UNDERSTUDY_TCP_REPAIR_TAKEOVERS ?? 5)
const labUnavailable = NetNs.unavailableReason()
const repairUnavailable = TcpRepair.probe()
const skipReason =
  labUnavailable ?? (typeof repairUnavailable === "string" ? repairUnavailable : undefined)
let workDir = ""

describe("TcpRepair availability", () => {
  it("says why when the process lacks CAP_NET_ADMIN", () => {
    const capsh = spawnSync("capsh", ["--help"], { stdio: "ignore" })
    if (process.getuid?.() !== 0 || capsh.error !== undefined) {
      // Not root: this process itself lacks the capability.
      const exit = Effect.runSyncExit(TcpRepair.available)
      expect(Exit.isFailure(exit)).toBe(true)
      return
    }
    const dropped = spawnSync(
      "capsh",
      ["--drop=cap_net_admin", "--", "-c", `"${process.execPath}" "${hostScript}" probe`],
      { encoding: "utf8" },
    )
    expect(dropped.status).toBe(2)
    const line = JSON.parse(dropped.stdout.trim()) as { t: string; reason: string }
    expect(line.t).toBe("unavailable")
    expect(line.reason).toMatch(/CAP_NET_ADMIN/)
    // And with the capability, the same check passes.
    const kept = spawnSync(process.execPath, [hostScript, "probe"], { encoding: "utf8" })
    expect(JSON.parse(kept.stdout.trim())).toEqual({ t: "available" })
  })
})

describe.skipIf(skipReason !== undefined)("TcpRepair takeover of a live TCP connection", () => {
  beforeAll(() => {
    NetNs.sweep(`${prefix}-`)
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), "us14-"))
    fs.mkdirSync(path.join(workDir, "objects"))
  })
  afterAll(() => {
    NetNs.sweep(`${prefix}-`)
    if (workDir !== "") fs.rmSync(workDir, { recursive: true, force: true })
  })

  it(
    `curl finishes every download through ${curlTakeovers} takeovers at random offsets, byte for byte`,
    async () => {
      for (let i = 0; i < curlTakeovers; i++) {
        const size = randomInt(8, 17) * 1024 * 1024 + randomInt(0, 1024 * 1024)
        const fraction = randomInt(10, 90) / 100
        const result = await takeoverRun({ workDir, client: "curl", size, fractions: [fraction] })
        console.log(
          `curl takeover ${i + 1}: ${size} bytes, A died at ${result.killAt}, outcome ${JSON.stringify(result.outcome)}, gap ${result.gapMs} ms (B told ${result.startMs} ms after)`,
        )
        expect(result.outcome?.t).toBe("resumed")
        expect(result.exitCode).toBe(0)
        expect(result.clientStderr).toBe("")
        expect(sha256(result.out)).toBe(sha256(result.object))
      }
    },
    curlTakeovers * 40_000,
  )

  it("wget finishes its download through a takeover, byte for byte", async () => {
    const size = randomInt(8, 13) * 1024 * 1024 + randomInt(0, 1024 * 1024)
    const result = await takeoverRun({
      workDir,
      client: "wget",
      size,
      fractions: [randomInt(20, 80) / 100],
    })
    console.log(
      `wget takeover: ${size} bytes, outcome ${JSON.stringify(result.outcome)}, gap ${result.gapMs} ms`,
    )
    expect(result.outcome?.t).toBe("resumed")
    expect(result.exitCode).toBe(0)
    expect(sha256(result.out)).toBe(sha256(result.object))
  }, 60_000)

  it("resets the client, with a typed refusal, when the checkpoint can not cover its acknowledgement", async () => {
    const size = 8 * 1024 * 1024
    // A checkpoints only when the transfer starts, so B finds a checkpoint the client is
    // megabytes past (the store holds the latest one, the first here) and may put back
    // at most 64 KiB: it must refuse, reset the client, and never send a byte.
    const result = await takeoverRun({
      workDir,
      client: "curl",
      size,
      fractions: [0.5],
      stale: true,
      refillBytesMax: 64 * 1024,
    })
    expect(result.outcome, JSON.stringify(result.outcome)).toMatchObject({
      t: "refused",
      reason: "TooOld",
      reset: true,
    })
    expect(result.exitCode).not.toBe(0)
    expect(result.clientStderr).toMatch(/reset/i)
    // What curl wrote is a prefix of the object: no wrong byte.
    const got = fs.readFileSync(result.out)
    const object = fs.readFileSync(result.object)
    expect(got.length).toBeLessThan(object.length)
    expect(got.equals(object.subarray(0, got.length))).toBe(true)
  }, 60_000)
})
