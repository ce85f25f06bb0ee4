/**
 * Several processes find the same stale Unix socket file at once: each may see it refused,
 * but only one may take the path over, and none may unlink the socket another has just
 * bound there.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import { Effect, Stream } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Address from "../src/Address.ts"
import * as Codec from "../src/Codec.ts"
import * as NodeTransport from "../src/NodeTransport.ts"
import { Transport } from "../src/Transport.ts"
import { contend, release } from "./fixtures/binder.ts"

const binderProgram = fileURLToPath(new URL("./fixtures/binder.ts", import.meta.url))

/** Contending processes, listeners in each, and rounds of the race among them. */
const processesCount = 2
const listenersPerProcess = 3
const processRoundsCount = 8
/** Listeners of one process, and rounds, for the in-process race. */
const listenersCount = 8
const roundsCount = 20
const answerTimeoutMs = 15_000

interface Contender {
  readonly child: ChildProcess
  /** The next line the process prints. */
  readonly next: () => Promise<string>
}

const startContender = (): Contender => {
  const child = spawn(process.execPath, [binderProgram], { stdio: ["pipe", "pipe", "inherit"] })
  const waiting: Array<(line: string) => void> = []
  const buffered: Array<string> = []
  readline.createInterface({ input: child.stdout! }).on("line", (line) => {
    // Its log lines go to stdout too.
    if (!/^(READY|RELEASED|WON |LOST )/.test(line)) return
    const resolve = waiting.shift()
    if (resolve === undefined) buffered.push(line)
    else resolve(line)
  })
  const next = () =>
    new Promise<string>((resolve, reject) => {
      const line = buffered.shift()
      if (line !== undefined) return resolve(line)
      const timer = setTimeout(
        () => reject(new Error(`contender ${child.pid} silent for ${answerTimeoutMs} ms`)),
        answerTimeoutMs,
      )
      waiting.push((text) => {
        clearTimeout(timer)
        resolve(text)
      })
    })
  return { child, next }
}

/** Leaves a socket file at `file` that nobody listens on, as a killed owner would. */
const leaveStaleSocket = async (file: string): Promise<void> => {
  const bound = `${file}.bound`
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen({ path: bound }, resolve))
  // A second name for the same socket: closing the server unlinks only the first.
  await fs.link(bound, file)
  await new Promise<void>((resolve) => server.close(() => resolve()))
}

const contendFor = (file: string) =>
  Effect.gen(function* () {
    const transport = yield* Transport
    return yield* transport.listen(Address.unix(file), { codec: Codec.bytes, keepAlive: false })
  })

/** Connects to `file` and gives the pid its listener answers with. */
const whoAnswers = (file: string): Promise<string> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const transport = yield* Transport
      const conn = yield* transport.connect(Address.unix(file), {
        codec: Codec.bytes,
        keepAlive: false,
      })
      const first = yield* Stream.runHead(conn.messages)
      return first._tag === "Some" ? new TextDecoder().decode(first.value) : "nothing"
    }).pipe(Effect.scoped, Effect.timeout("10 seconds"), Effect.provide(NodeTransport.layer)),
  )

const outcomes = (line: string): Array<string> => line.split(",")

/** Checks one round's outcomes: exactly one winner, the others AddressInUse, and the path
 * reaches the winner (nobody unlinked its fresh socket). */
const checkRound = async (file: string, answers: ReadonlyArray<string>, context: string) => {
  const winners = answers.filter((answer) => answer.startsWith("WON "))
  expect(winners, context).toHaveLength(1)
  const losers = answers.filter((answer) => !answer.startsWith("WON "))
  expect(
    losers.every((answer) => answer === "LOST AddressInUse"),
    context,
  ).toBe(true)
  expect(await whoAnswers(file), context).toBe(winners[0]!.slice("WON ".length))
}

describe("stale Unix socket files", () => {
  let dir: string
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "understudy-stale-"))
  })
  afterAll(() => fs.rm(dir, { recursive: true, force: true }))

  it(`${listenersCount} listeners race for one stale file ${roundsCount} times: one wins, its socket stays`, async () => {
    for (let round = 0; round < roundsCount; round++) {
      const file = path.join(dir, `local-${round}.sock`)
      await leaveStaleSocket(file)
      const answers = await Effect.runPromise(
        Effect.all(
          Array.from({ length: listenersCount }, (_, i) => contend(file, `here-${i}`)),
          { concurrency: "unbounded" },
        ),
      )
      await checkRound(file, answers, `round ${round}: ${answers.join(", ")}`)
      await Effect.runPromise(release)
    }
  }, 60_000)

  it("while another process holds the file's removal lock, listening fails AddressInUse naming the lock", async () => {
    const file = path.join(dir, "locked.sock")
    await leaveStaleSocket(file)
    // The lock every process that found this file takes: named after its identity.
    const stat = await fs.lstat(file, { bigint: true })
    const name = `understudy-stale-socket-${crypto
      .createHash("sha256")
      .update(`${stat.dev}:${stat.ino}:${stat.ctimeNs}`)
      .digest("hex")}`
    const holder = net.createServer()
    await new Promise<void>((resolve) => holder.listen({ path: `\0${name}` }, resolve))
    try {
      const error = await Effect.runPromise(
        Effect.flip(contendFor(file)).pipe(Effect.scoped, Effect.provide(NodeTransport.layer)),
      )
      expect(error.reason).toBe("AddressInUse")
      expect(error.detail).toContain(`@${name}`)
      expect((await fs.lstat(file)).isSocket()).toBe(true)
    } finally {
      holder.close()
    }
  }, 20_000)

  describe("across processes", () => {
    const contenders: Array<Contender> = []
    beforeAll(async () => {
      for (let i = 0; i < processesCount; i++) contenders.push(startContender())
      for (const contender of contenders) expect(await contender.next()).toBe("READY")
    }, 60_000)
    afterAll(() => {
      for (const { child } of contenders) child.kill("SIGKILL")
    })

    it(`${processesCount} processes of ${listenersPerProcess} listeners race ${processRoundsCount} times: one wins, its socket stays`, async () => {
      for (let round = 0; round < processRoundsCount; round++) {
        const file = path.join(dir, `race-${round}.sock`)
        await leaveStaleSocket(file)
        for (const { child } of contenders) {
          child.stdin!.write(`listen ${file} ${listenersPerProcess}\n`)
        }
        const lines = await Promise.all(contenders.map((contender) => contender.next()))
        const answers = lines.flatMap(outcomes)
        await checkRound(file, answers, `round ${round}: ${answers.join(", ")}`)
        for (const { child } of contenders) child.stdin!.write("release\n")
        for (const contender of contenders) expect(await contender.next()).toBe("RELEASED")
      }
    }, 60_000)
  })
})
