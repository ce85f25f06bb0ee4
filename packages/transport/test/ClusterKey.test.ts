import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import * as fc from "fast-check"
import * as ClusterKey from "../src/ClusterKey.ts"

const directories: Array<string> = []
const scratch = () => {
  const directory = mkdtempSync(join(tmpdir(), "understudy-key-"))
  directories.push(directory)
  return directory
}
afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true })
})

const reasonOf = (path: string) =>
  ClusterKey.readFile(path).pipe(
    Effect.flip,
    Effect.map((error) => error.reason),
  )

describe("ClusterKey", () => {
  it.effect("generates a 0600 file and reads back the same key", () =>
    Effect.gen(function* () {
      const path = join(scratch(), "sub", "cluster.key")
      const written = yield* ClusterKey.generateFile(path)
      expect(statSync(path).mode & 0o777).toBe(0o600)
      expect(statSync(join(path, "..")).mode & 0o777).toBe(0o700)
      const read = yield* ClusterKey.readFile(path)
      expect(Redacted.value(read)).toEqual(Redacted.value(written))
      expect(Redacted.value(read).byteLength).toBe(ClusterKey.keyBytes)
    }),
  )

  it.effect("never overwrites an existing key", () =>
    Effect.gen(function* () {
      const path = join(scratch(), "cluster.key")
      yield* ClusterKey.generateFile(path)
      const before = readFileSync(path, "utf8")
      const error = yield* Effect.flip(ClusterKey.generateFile(path))
      expect(error.reason).toBe("Exists")
      expect(readFileSync(path, "utf8")).toBe(before)
    }),
  )

  it.effect("refuses a key that others can read, a missing file and a directory", () =>
    Effect.gen(function* () {
      const directory = scratch()
      const path = join(directory, "cluster.key")
      yield* ClusterKey.generateFile(path)
      chmodSync(path, 0o644)
      expect(yield* reasonOf(path)).toBe("Insecure")
      chmodSync(path, 0o660)
      expect(yield* reasonOf(path)).toBe("Insecure")
      expect(yield* reasonOf(join(directory, "absent.key"))).toBe("Missing")
      expect(yield* reasonOf(directory)).toBe("NotAFile")
    }),
  )

  it.effect("refuses malformed contents", () =>
    Effect.gen(function* () {
      const path = join(scratch(), "cluster.key")
      for (const text of [
        "",
        "short",
        "zz".repeat(32),
        "ab".repeat(16),
        "a".repeat(65),
        "ab".repeat(3000),
      ]) {
        writeFileSync(path, text, { mode: 0o600 })
        chmodSync(path, 0o600)
        expect(yield* reasonOf(path)).toBe("Malformed")
      }
    }),
  )

  it("decodes any text to a key or a typed error, never a throw", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (text) => {
        const decoded = ClusterKey.decode("k", text)
        if (decoded instanceof ClusterKey.ClusterKeyError) {
          expect(decoded.reason).toBe("Malformed")
        } else {
          expect(decoded.byteLength).toBeGreaterThanOrEqual(32)
          expect(Buffer.from(decoded).toString("hex")).toBe(text.trim().toLowerCase())
        }
      }),
    )
  })
})
