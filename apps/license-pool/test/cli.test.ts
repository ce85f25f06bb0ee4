/**
 * The command lines without a running pool: help, usage errors, and the key file rules
 * (keygen writes 0600 and never overwrites; a key file others may read is refused; running
 * without a key needs --insecure and prints a warning). Independent commands run at once.
 */
import { execFile } from "node:child_process"
import { chmodSync, mkdtempSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"

const script = (name: string) => join(import.meta.dirname, "..", "src", `${name}.ts`)
const dir = mkdtempSync(join(tmpdir(), "license-cli-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const run = (name: string, ...args: Array<string>) =>
  new Promise<{ readonly status: number | null; readonly stdout: string; readonly stderr: string }>(
    (resolve) => {
      execFile(
        process.execPath,
        [script(name), ...args],
        { encoding: "utf8", timeout: 30_000 },
        (error, stdout, stderr) =>
          resolve({
            status: error === null ? 0 : typeof error.code === "number" ? error.code : null,
            stdout,
            stderr,
          }),
      )
    },
  )

describe("license-pool command lines", () => {
  it("print help and refuse bad usage with exit code 2", async () => {
    const pool = "s1=127.0.0.1:1:2"
    const [serverHelp, clientHelp, adminHelp, noId, badPool, unknown, badMetrics, badClients] =
      await Promise.all([
        run("server", "--help"),
        run("client", "--help"),
        run("admin", "--help"),
        run("server", "--pool", pool),
        run("client", "--pool", "nonsense", "--product", "x"),
        run("admin", "frobnicate"),
        run("server", "--id", "s1", "--pool", pool, "--metrics", "x"),
        run("client", "--pool", pool, "--product", "x", "--clients", "0"),
      ])
    for (const help of [serverHelp, clientHelp, adminHelp]) expect(help.status).toBe(0)
    expect(noId.status).toBe(2)
    expect(noId.stderr).toContain("--id is required")
    expect(badPool.stderr).toContain("expected ID=HOST:PEER_PORT:CLIENT_PORT")
    expect(unknown.status).toBe(2)
    for (const flag of ["--metrics", "--otlp"]) expect(serverHelp.stdout).toContain(flag)
    expect(badMetrics.status).toBe(2)
    expect(badMetrics.stderr).toContain("--metrics x")
    expect(badClients.status).toBe(2)
    expect(badClients.stderr).toContain("bad --clients")
  })

  it("keygen writes a 0600 key once; a readable key is refused; --insecure warns", async () => {
    const key = join(dir, "pool.key")
    const pool = "s1=127.0.0.1:1:2"
    const [written, insecure] = await Promise.all([
      run("admin", "keygen", "--key-file", key),
      run("admin", "status", "--pool", pool, "--insecure", "--json"),
    ])
    expect(written.status).toBe(0)
    expect(statSync(key).mode & 0o777).toBe(0o600)
    expect((await run("admin", "keygen", "--key-file", key)).status).not.toBe(0)
    chmodSync(key, 0o644)
    const refused = await run("admin", "status", "--pool", pool, "--key-file", key)
    expect(refused.status).toBe(1)
    expect(refused.stderr).toContain("Insecure")
    expect(insecure.stderr).toContain("WARNING: --insecure")
    expect(JSON.parse(insecure.stdout)).toMatchObject({ type: "status", leader: null })
  })
})
