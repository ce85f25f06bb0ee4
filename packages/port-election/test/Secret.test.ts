import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import * as Secret from "../src/Secret.ts"

const secretModule = fileURLToPath(new URL("../src/Secret.ts", import.meta.url))
const hex = (secret: Redacted.Redacted<Uint8Array>) =>
  Buffer.from(Redacted.value(secret)).toString("hex")

let directory = ""
const children = new Set<ChildProcess>()

beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), "understudy-secret-"))
})

afterEach(() => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL")
  children.clear()
  rmSync(directory, { recursive: true, force: true })
})

/**
 * A child process that waits until `startAtMs` (so all children start together), then
 * loads each of `paths` in turn and prints one line per path: the secret in hex or the error.
 */
const loaderScript = `
import { Effect, Redacted } from "effect"
import * as Secret from ${JSON.stringify(secretModule)}
const [startAtMs, ...paths] = JSON.parse(process.argv[1])
while (Date.now() < startAtMs) {}
for (const path of paths) {
  const exit = Effect.runSyncExit(Secret.load(path))
  if (exit._tag === "Success") console.log(Buffer.from(Redacted.value(exit.value)).toString("hex"))
  else console.log("error " + JSON.stringify(exit.cause))
}
`

const runLoader = (startAtMs: number, paths: ReadonlyArray<string>) =>
  new Promise<Array<string>>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--input-type=module", "-e", loaderScript, JSON.stringify([startAtMs, ...paths])],
      { cwd: fileURLToPath(new URL("..", import.meta.url)), stdio: ["ignore", "pipe", "pipe"] },
    )
    children.add(child)
    let out = ""
    let err = ""
    child.stdout!.on("data", (chunk) => {
      out += chunk
    })
    child.stderr!.on("data", (chunk) => {
      err += chunk
    })
    child.on("error", reject)
    child.on("exit", (code) => {
      if (code === 0) resolve(out.trim().split("\n"))
      else reject(new Error(`loader exited ${code}: ${err}`))
    })
  })

describe("Secret.load", () => {
  it("creates a missing secret with mode 0600, in a 0700 directory, and reads it back", () => {
    const path = join(directory, "nested", "deeper", "secret")
    const first = Effect.runSync(Secret.load(path))
    expect(Redacted.value(first).byteLength).toBe(32)
    expect(statSync(path).mode & 0o777).toBe(0o600)
    expect(statSync(join(directory, "nested", "deeper")).mode & 0o077).toBe(0)
    expect(hex(Effect.runSync(Secret.load(path)))).toBe(hex(first))
    expect(Buffer.from(readFileSync(path)).toString("hex")).toBe(hex(first))
    // The temporary file it was written under is gone.
    expect(readdirSync(join(directory, "nested", "deeper"))).toEqual(["secret"])
  })

  it("many loads of the same new path, in one process, all give one secret", () =>
    Effect.gen(function* () {
      const path = join(directory, "secret")
      const secrets = yield* Effect.all(
        Array.from({ length: 32 }, () => Secret.load(path)),
        { concurrency: "unbounded" },
      )
      expect(new Set(secrets.map(hex)).size).toBe(1)
      expect(statSync(path).mode & 0o777).toBe(0o600)
    }).pipe(Effect.runPromise))

  it("processes starting together agree on one secret per path (atomic creation)", async () => {
    const paths = Array.from({ length: 40 }, (_, i) => join(directory, `s${i}`, "secret"))
    // Far enough ahead for every child to have started and be spinning on the clock.
    const startAtMs = Date.now() + 2_500
    const outputs = await Promise.all(Array.from({ length: 6 }, () => runLoader(startAtMs, paths)))
    for (const output of outputs) expect(output).toHaveLength(paths.length)
    paths.forEach((path, index) => {
      const seen = new Set(outputs.map((output) => output[index]))
      expect(seen.size, `secrets seen for ${path}`).toBe(1)
      const [only] = [...seen]
      expect(only).toMatch(/^[0-9a-f]{64}$/)
      expect(readFileSync(path).toString("hex")).toBe(only)
      expect(statSync(path).mode & 0o777).toBe(0o600)
      expect(readdirSync(join(directory, `s${index}`))).toEqual(["secret"])
    })
  }, 30_000)

  it("refuses an existing secret others could read (Insecure)", () => {
    const path = join(directory, "secret")
    writeFileSync(path, randomBytes(32), { mode: 0o644 })
    chmodSync(path, 0o644)
    const error = Effect.runSync(Effect.flip(Secret.load(path)))
    expect(error).toBeInstanceOf(Secret.SecretError)
    expect(error.reason).toBe("Insecure")
    expect(error.detail).toContain("644")
    // Refusing does not repair it behind the user's back.
    expect(statSync(path).mode & 0o777).toBe(0o644)
    chmodSync(path, 0o620)
    expect(Effect.runSync(Effect.flip(Secret.load(path))).reason).toBe("Insecure")
  })

  it("refuses a symlink, even to a good secret, and never creates through a dangling one", () => {
    const target = join(directory, "real")
    writeFileSync(target, randomBytes(32), { mode: 0o600 })
    const link = join(directory, "secret")
    symlinkSync(target, link)
    const error = Effect.runSync(Effect.flip(Secret.load(link)))
    expect(error.reason).toBe("Unreadable")
    expect(error.detail).toBe("ELOOP")

    const dangling = join(directory, "dangling")
    const nowhere = join(directory, "nowhere")
    symlinkSync(nowhere, dangling)
    const danglingError = Effect.runSync(Effect.flip(Secret.load(dangling)))
    expect(danglingError.reason).toBe("Unreadable")
    expect(existsSync(nowhere)).toBe(false)
    expect(lstatSync(dangling).isSymbolicLink()).toBe(true)
  })

  it("refuses a directory (NotAFile), a short file (TooShort) and another user's file (NotOwner)", () => {
    const dir = join(directory, "secret-dir")
    mkdirSync(dir, { mode: 0o700 })
    expect(Effect.runSync(Effect.flip(Secret.load(dir))).reason).toBe("NotAFile")

    const short = join(directory, "short")
    writeFileSync(short, randomBytes(8), { mode: 0o600 })
    expect(Effect.runSync(Effect.flip(Secret.load(short))).reason).toBe("TooShort")

    if (process.getuid?.() === 0) {
      const foreign = join(directory, "foreign")
      writeFileSync(foreign, randomBytes(32), { mode: 0o600 })
      chownSync(foreign, 65534, 65534)
      const error = Effect.runSync(Effect.flip(Secret.load(foreign)))
      expect(error.reason).toBe("NotOwner")
      expect(error.detail).toContain("65534")
    } else {
      // Not root: the file can not be given away; a file we do own still loads.
      const own = join(directory, "own")
      writeFileSync(own, randomBytes(32), { mode: 0o600 })
      expect(Redacted.value(Effect.runSync(Secret.load(own))).byteLength).toBe(32)
    }
  })
})
