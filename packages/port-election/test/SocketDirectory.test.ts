import { spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Address, NodeTransport } from "@understudy/transport"
import { Effect, Redacted } from "effect"
import * as Election from "../src/Election.ts"
import * as SocketDirectory from "../src/SocketDirectory.ts"

const nobody = 65534

/**
 * Runs, as user `nobody`, a script that tries to connect to and to bind the socket `path`,
 * and gives each attempt's outcome: "ok" or the error code.
 */
const tryAsNobody = (path: string): { readonly connect: string; readonly bind: string } => {
  const script = `
const net = require("node:net")
const path = process.argv[1]
const outcome = {}
const done = () => { if (outcome.connect && outcome.bind) { console.log(JSON.stringify(outcome)); process.exit(0) } }
const socket = net.connect({ path })
socket.once("connect", () => { outcome.connect = "ok"; socket.destroy(); bind() })
socket.once("error", (error) => { outcome.connect = error.code; bind() })
const bind = () => {
  const server = net.createServer()
  server.once("listening", () => { outcome.bind = "ok"; server.close(); done() })
  server.once("error", (error) => { outcome.bind = error.code; done() })
  server.listen({ path: path + ".squat", exclusive: true })
}
setTimeout(() => { console.log(JSON.stringify({ connect: "hung", bind: "hung" })); process.exit(1) }, 5000)
`
  const result = spawnSync(
    "setpriv",
    ["--reuid=nobody", "--regid=nogroup", "--clear-groups", process.execPath, "-e", script, path],
    { cwd: "/", encoding: "utf8", timeout: 10_000 },
  )
  if (result.status !== 0) {
    throw new Error(`the nobody child failed (${result.status}): ${result.stderr}${result.stdout}`)
  }
  return JSON.parse(result.stdout.trim())
}

describe("SocketDirectory", () => {
  let base: string
  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), "port-election-socketdir-"))
    // Anyone may pass through: what keeps nobody out must be the socket directory itself.
    chmodSync(base, 0o755)
  })
  afterAll(() => rmSync(base, { recursive: true, force: true }))

  it("creates a missing directory with mode 0700 and names the socket in it", () => {
    const directory = join(base, "fresh")
    const address = Effect.runSync(SocketDirectory.defaultAddress("prog", "n1", directory))
    expect(Address.format(address)).toBe(`unix://${directory}/understudy-prog-n1.sock`)
    expect(Effect.runSync(SocketDirectory.ensure(directory))).toBe(directory)
  })

  it("prefers $XDG_RUNTIME_DIR, else ~/.understudy", () => {
    const saved = process.env.XDG_RUNTIME_DIR
    try {
      process.env.XDG_RUNTIME_DIR = "/run/user/4242"
      expect(SocketDirectory.defaultPath()).toBe("/run/user/4242")
      delete process.env.XDG_RUNTIME_DIR
      expect(SocketDirectory.defaultPath()).toMatch(/\/\.understudy$/)
    } finally {
      if (saved === undefined) delete process.env.XDG_RUNTIME_DIR
      else process.env.XDG_RUNTIME_DIR = saved
    }
  })

  it("refuses a group- or world-accessible directory, a symlink, a file, a long path (typed)", () => {
    const open = join(base, "open")
    mkdirSync(open, { mode: 0o700 })
    chmodSync(open, 0o750)
    const insecure = Effect.runSync(Effect.flip(SocketDirectory.ensure(open)))
    expect(insecure).toBeInstanceOf(SocketDirectory.SocketDirectoryError)
    expect(insecure.reason).toBe("Insecure")
    chmodSync(open, 0o701)
    expect(Effect.runSync(Effect.flip(SocketDirectory.ensure(open))).reason).toBe("Insecure")

    const link = join(base, "link")
    symlinkSync(join(base, "fresh"), link)
    expect(Effect.runSync(Effect.flip(SocketDirectory.ensure(link))).reason).toBe("NotADirectory")

    const long = join(base, "l".repeat(100))
    const tooLong = Effect.runSync(Effect.flip(SocketDirectory.defaultAddress("p", "n", long)))
    expect(tooLong.reason).toBe("PathTooLong")
  })

  it("refuses a directory owned by another user (needs root)", () => {
    if (process.getuid?.() !== 0) {
      throw new Error("run as root: this test gives a directory away to nobody (chown)")
    }
    const foreign = join(base, "foreign")
    mkdirSync(foreign, { mode: 0o700 })
    chownSync(foreign, nobody, nobody)
    const error = Effect.runSync(Effect.flip(SocketDirectory.ensure(foreign)))
    expect(error.reason).toBe("NotOwner")
    expect(error.detail).toContain(String(nobody))
  })

  it.live(
    "another user can neither connect to nor bind the default election address (needs root)",
    () =>
      Effect.gen(function* () {
        if (process.getuid?.() !== 0) {
          return yield* Effect.die(
            new Error("run as root: this test runs a child as user nobody (setpriv)"),
          )
        }
        const runtime = join(base, `runtime-${randomBytes(4).toString("hex")}`)
        const address = yield* SocketDirectory.defaultAddress("test", "squat", runtime)
        const election = yield* Election.make({
          program: "test",
          address,
          secret: Redacted.make(new Uint8Array(randomBytes(32))),
        }).pipe(Effect.provide(NodeTransport.layer))
        expect((yield* election.role)._tag).toBe("Supervisor")
        const attempt = tryAsNobody(address.path)
        expect(attempt).toEqual({ connect: "EACCES", bind: "EACCES" })

        // The control: the same child reaches and binds a socket in a directory anyone may
        // enter, so the EACCES above is the directory's doing, not a broken child.
        const open = join(base, `open-${randomBytes(4).toString("hex")}`)
        mkdirSync(open)
        chmodSync(open, 0o777)
        const openAddress = yield* Effect.map(
          Effect.flip(SocketDirectory.ensure(open)),
          (error) => error.reason,
        )
        expect(openAddress).toBe("Insecure")
        const openElection = yield* Election.make({
          program: "test",
          address: Address.unix(join(open, "e.sock")),
          secret: Redacted.make(new Uint8Array(randomBytes(32))),
        }).pipe(Effect.provide(NodeTransport.layer))
        expect((yield* openElection.role)._tag).toBe("Supervisor")
        chmodSync(join(open, "e.sock"), 0o777)
        expect(tryAsNobody(join(open, "e.sock"))).toEqual({ connect: "ok", bind: "ok" })
      }).pipe(Effect.scoped),
    20_000,
  )
})
