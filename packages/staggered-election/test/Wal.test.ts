/**
 * The write-ahead log: records survive a reopen; a log cut or damaged at every byte offset of
 * its last record recovers exactly the records before it (a torn tail, truncated) or says it
 * is damaged (`ElectionWalCorrupt`), and never yields a record that was not written; a tail
 * torn and zero-filled (the space of an append whose data never landed) is a torn tail; fuzzed
 * bytes decode to records or a typed failure, never a throw; `rewrite` replaces the log.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Result } from "effect"
import * as fc from "fast-check"
import * as Wal from "../src/Wal.ts"

const text = (value: string) => new TextEncoder().encode(value)
const read = (records: ReadonlyArray<Uint8Array>) =>
  records.map((record) => new TextDecoder().decode(record))

const withDirectory = <A, E>(use: (directory: string) => Effect.Effect<A, E>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "understudy-wal-"))),
    use,
    (directory) => Effect.sync(() => fs.rmSync(directory, { recursive: true, force: true })),
  )

const recover = (file: string) =>
  Effect.scoped(
    Effect.map(Wal.open(file), ({ records, truncatedBytes }) => ({
      records: read(records),
      truncatedBytes,
    })),
  )

const written = ["first", "second record", "third: a longer one, with ünïcödé"]

describe("Wal", () => {
  it.effect("appended records are there after a reopen, and more can be appended", () =>
    withDirectory((directory) =>
      Effect.gen(function* () {
        const file = path.join(directory, "log")
        yield* Effect.scoped(
          Effect.gen(function* () {
            const { wal, records } = yield* Wal.open(file)
            expect(records).toEqual([])
            yield* wal.append([text(written[0]!)])
            yield* wal.append([text(written[1]!), text(written[2]!)])
          }),
        )
        expect(fs.statSync(file).mode & 0o777).toBe(0o600)
        expect(yield* recover(file)).toEqual({ records: written, truncatedBytes: 0 })
        yield* Effect.scoped(
          Effect.flatMap(Wal.open(file), ({ wal }) => wal.append([text("fourth")])),
        )
        expect((yield* recover(file)).records).toEqual([...written, "fourth"])
      }),
    ),
  )

  it.effect("a tail cut or damaged at every byte offset of the last record", () =>
    withDirectory((directory) =>
      Effect.gen(function* () {
        const whole = Buffer.concat(written.map((record) => Wal.frame(text(record))))
        const lastStart = whole.length - Wal.frame(text(written[2]!)).length
        const file = path.join(directory, "log")
        let truncations = 0
        let damaged = 0
        for (let offset = lastStart; offset < whole.length; offset++) {
          // Cut there: the first two records, and the file is truncated to them.
          fs.writeFileSync(file, whole.subarray(0, offset))
          const cut = yield* recover(file)
          expect(cut.records).toEqual(written.slice(0, 2))
          expect(cut.truncatedBytes).toBe(offset - lastStart)
          expect(fs.statSync(file).size).toBe(lastStart)
          truncations++
          // One byte flipped there: never a wrong record, a prefix or a typed error.
          const flipped = Buffer.from(whole)
          flipped[offset] = flipped[offset]! ^ 0x5a
          fs.writeFileSync(file, flipped)
          const exit = yield* Effect.exit(recover(file))
          if (Exit.isSuccess(exit)) {
            expect(exit.value.records).toEqual(written.slice(0, 2))
          } else {
            expect(exit.cause.toString()).toContain("ElectionWalCorrupt")
            damaged++
          }
        }
        expect(truncations).toBe(whole.length - lastStart)
        // A flipped length that ends the record early leaves bytes after it: damage, not a tear.
        expect(damaged).toBeGreaterThan(0)
      }),
    ),
  )

  it.effect(
    "a write torn at any byte of its last two records and zero-filled to its length (an append whose data never landed) is a torn tail",
    () =>
      withDirectory((directory) =>
        Effect.gen(function* () {
          const frames = written.map((record) => Wal.frame(text(record)))
          const whole = Buffer.concat(frames)
          const ends = frames.map((_, i) =>
            frames.slice(0, i + 1).reduce((n, frame) => n + frame.length, 0),
          )
          const file = path.join(directory, "log")
          for (let offset = ends[0]!; offset < whole.length; offset++) {
            const torn = Buffer.alloc(whole.length)
            whole.copy(torn, 0, 0, offset)
            fs.writeFileSync(file, torn)
            const kept = ends.filter((end) => end <= offset).length
            const recovered = yield* recover(file)
            expect(recovered.records).toEqual(written.slice(0, kept))
            expect(fs.statSync(file).size).toBe(ends[kept - 1])
          }
        }),
      ),
  )

  it.effect("a damaged record before the end is ElectionWalCorrupt, and the file is kept", () =>
    withDirectory((directory) =>
      Effect.gen(function* () {
        const whole = Buffer.concat(written.map((record) => Wal.frame(text(record))))
        whole[14] = whole[14]! ^ 1 // the first record's payload
        const file = path.join(directory, "log")
        fs.writeFileSync(file, whole)
        const error = yield* Effect.flip(recover(file))
        expect(error._tag).toBe("ElectionWalCorrupt")
        expect(error._tag === "ElectionWalCorrupt" && error.offset).toBe(0)
        expect(fs.readFileSync(file).equals(whole)).toBe(true)
      }),
    ),
  )

  it.effect("rewrite replaces the log atomically and appends continue after it", () =>
    withDirectory((directory) =>
      Effect.gen(function* () {
        const file = path.join(directory, "log")
        yield* Effect.scoped(
          Effect.gen(function* () {
            const { wal } = yield* Wal.open(file)
            yield* wal.append(written.map(text))
            yield* wal.rewrite([text("snapshot")])
            expect(yield* wal.size).toBe(Wal.frame(text("snapshot")).length)
            yield* wal.append([text("after")])
          }),
        )
        expect((yield* recover(file)).records).toEqual(["snapshot", "after"])
        expect(fs.existsSync(`${file}.next`)).toBe(false)
      }),
    ),
  )

  it("decode: any bytes give records or a typed failure; valid logs with any tail give their records", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const decoded = Wal.decode(bytes)
        if (Result.isSuccess(decoded)) {
          expect(decoded.success.validBytes + decoded.success.tornBytes).toBe(bytes.length)
        } else {
          expect(decoded.failure.offset).toBeGreaterThanOrEqual(0)
        }
      }),
      { numRuns: 2_000 },
    )
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 6 }),
        fc.uint8Array({ maxLength: 11 }),
        (records, tail) => {
          const bytes = Buffer.concat([...records.map(Wal.frame), tail])
          const decoded = Wal.decode(bytes)
          // Shorter than a header: always a torn tail.
          expect(Result.isSuccess(decoded)).toBe(true)
          if (Result.isSuccess(decoded)) {
            expect(decoded.success.records.map((r) => Buffer.from(r).toString("hex"))).toEqual(
              records.map((r) => Buffer.from(r).toString("hex")),
            )
            expect(decoded.success.tornBytes).toBe(tail.length)
          }
        },
      ),
      { numRuns: 500 },
    )
  })
})
