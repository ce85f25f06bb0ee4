/**
 * `license-server --resource NAME:CAPACITY` as real processes on loopback: three servers
 * lease out a resource of the operator's own (no vendor key, no license file), a client
 * process with three clients gets two slots and a refusal for capacity for the third, and
 * `license-admin status` reports the resource's capacity. Bad `--resource` values and a
 * resource given with a vendor key are refused before anything starts.
 */
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { Eventually, JsonLinesProcess as Jl, Ports } from "@understudy/testkit"
import { afterAll, describe, expect, it } from "vitest"

const script = (name: string) => join(import.meta.dirname, "..", "src", `${name}.ts`)
const dir = mkdtempSync(join(tmpdir(), "license-resource-"))
const key = join(dir, "pool.key")
const run = promisify(execFile)
const exitOf = (name: string, ...args: Array<string>) =>
  run(process.execPath, [script(name), ...args], { encoding: "utf8", timeout: 30_000 }).then(
    () => ({ status: 0, stderr: "" }),
    (error: { code?: number; stderr?: string }) => ({
      status: error.code ?? null,
      stderr: error.stderr ?? "",
    }),
  )

afterAll(() => {
  Jl.killAll()
  rmSync(dir, { recursive: true, force: true })
})

describe("license-server --resource", () => {
  it("refuses a bad resource, or one given with a vendor key, with exit code 2", async () => {
    const common = ["--id", "s1", "--pool", "s1=127.0.0.1:1:2", "--state-dir", dir, "--insecure"]
    const [noCapacity, versionZero, both] = await Promise.all([
      exitOf("server", ...common, "--resource", "render"),
      exitOf("server", ...common, "--resource", "render:2:0"),
      exitOf("server", ...common, "--resource", "render:2", "--vendor-key", key),
    ])
    expect(noCapacity).toMatchObject({ status: 2 })
    expect(noCapacity.stderr).toContain("expected NAME:CAPACITY")
    expect(versionZero).toMatchObject({ status: 2 })
    expect(versionZero.stderr).toContain("version")
    expect(both).toMatchObject({ status: 2 })
    expect(both.stderr).toContain("--resource excludes --vendor-key")
  })

  it("three servers lease out 2 slots: two clients granted, the third refused for capacity", async () => {
    await run(process.execPath, [script("admin"), "keygen", "--key-file", key])
    const ports = await Ports.freeUdpPorts(6)
    const ids = ["s1", "s2", "s3"]
    const pool = ids.map((id, index) => `${id}=127.0.0.1:${ports[index]}:${ports[index + 3]}`)
    const servers = ids.map(
      (id) =>
        new Jl.JsonLinesProcess(script("server"), [
          ...["--id", id, "--pool", pool.join(","), "--resource", "render-slot:2"],
          ...["--state-dir", join(dir, "state"), "--key-file", key, "--json"],
        ]),
    )
    const client = new Jl.JsonLinesProcess(script("client"), [
      ...["--pool", pool.join(","), "--product", "render-slot", "--hold", "600s"],
      ...["--clients", "3", "--key-file", key, "--json"],
    ])
    const events = (type: string) => client.lines.filter((line) => line.type === type)
    await Eventually.promise(
      "two clients granted, the third refused for capacity",
      () =>
        events("Granted").length === 2 &&
        events("Denied").some((line) => line.reason === "capacity"),
      { within: "60 seconds" },
    )
    const status = JSON.parse(
      (
        await run(
          process.execPath,
          [script("admin"), "status", "--pool", pool.join(","), "--key-file", key, "--json"],
          { encoding: "utf8", timeout: 30_000 },
        )
      ).stdout,
    ) as Record<string, unknown>
    expect(JSON.stringify(status)).toContain('"capacity":2')
    expect(new Set(events("Granted").map((line) => line.client)).size).toBe(2)
    for (const proc of [client, ...servers]) proc.kill("SIGKILL")
    await Promise.all([client, ...servers].map((proc) => proc.exit()))
  }, 90_000)
})
