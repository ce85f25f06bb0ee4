/**
 * The command lines without a running pool: help, usage errors, and the key file rules
 * (keygen writes 0600 and never overwrites; a key file others may read is refused; running
 * without a key needs --insecure and prints a warning).
 */
import { spawnSync } from "node:child_process"
import { chmodSync, mkdtempSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"

const script = (name: string) => join(import.meta.dirname, "..", "src", `${name}.ts`)
const dir = mkdtempSync(join(tmpdir(), "license-cli-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const run = (name: string, ...args: Array<string>) =>
  spawnSync(process.execPath, [script(name), ...args], { encoding: "utf8", timeout: 30_000 })

describe("license-pool command lines", () => {
  it("print help and refuse bad usage with exit code 2", () => {
    for (const name of ["server", "client", "admin"]) expect(run(name, "--help").status).toBe(0)
    const noId = run("server", "--pool", "s1=127.0.0.1:1:2")
    expect(noId.status).toBe(2)
    expect(noId.stderr).toContain("--id is required")
    expect(run("client", "--pool", "nonsense", "--product", "x").stderr).toContain(
      "expected ID=HOST:PEER_PORT:CLIENT_PORT",
    )
    expect(run("admin", "frobnicate").status).toBe(2)
    const help = run("server", "--help").stdout
    for (const flag of ["--metrics", "--otlp"]) expect(help).toContain(flag)
    const badMetrics = run("server", "--id", "s1", "--pool", "s1=127.0.0.1:1:2", "--metrics", "x")
    expect(badMetrics.status).toBe(2)
    expect(badMetrics.stderr).toContain("--metrics x")
    const badClients = run(
      "client",
      "--pool",
      "s1=127.0.0.1:1:2",
      "--product",
      "x",
      "--clients",
      "0",
    )
    expect(badClients.status).toBe(2)
    expect(badClients.stderr).toContain("bad --clients")
  })

  it("keygen writes a 0600 key once; a readable key is refused; --insecure warns", () => {
    const key = join(dir, "pool.key")
    expect(run("admin", "keygen", "--key-file", key).status).toBe(0)
    expect(statSync(key).mode & 0o777).toBe(0o600)
    expect(run("admin", "keygen", "--key-file", key).status).not.toBe(0)
    chmodSync(key, 0o644)
    const pool = "s1=127.0.0.1:1:2"
    const refused = run("admin", "status", "--pool", pool, "--key-file", key)
    expect(refused.status).toBe(1)
    expect(refused.stderr).toContain("Insecure")
    const insecure = run("admin", "status", "--pool", pool, "--insecure", "--json")
    expect(insecure.stderr).toContain("WARNING: --insecure")
    expect(JSON.parse(insecure.stdout)).toMatchObject({ type: "status", leader: null })
  })
})
