/**
 * A capture of the loopback interface for the process tests, without tcpdump: `capture.pl`
 * reads an AF_PACKET socket (root, and perl, which every Debian system has) and prints one
 * line per UDP datagram of the ports asked for, SCTP chunk types included. `mark(label)`
 * sends a datagram of its own through the interface and waits until the capture printed
 * it, so "what was sent after this point" is exact: everything captured after the mark
 * left its sender after the mark was sent.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as Dgram from "node:dgram"
import { fileURLToPath } from "node:url"
import { Eventually } from "@understudy/testkit"

const script = fileURLToPath(new URL("./capture.pl", import.meta.url))

/** One captured datagram. */
export interface Datagram {
  readonly src: string
  readonly srcPort: number
  readonly dst: string
  readonly dstPort: number
  /** The SCTP common header's verification tag. */
  readonly vtag: number
  /** Chunk types in order; `value` is a DATA chunk's TSN, an INIT's initial TSN, a SACK's
   * cumulative TSN ack. */
  readonly chunks: ReadonlyArray<{ readonly type: number; readonly value?: number }>
}

/** SCTP chunk types the tests name. */
export const chunkType = {
  data: 0,
  init: 1,
  sack: 3,
  heartbeat: 4,
  heartbeatAck: 5,
  auth: 15,
} as const

/** Why a capture can not run here, or undefined. */
export const unavailableReason = (): string | undefined => {
  if (process.platform !== "linux") return "a loopback capture needs Linux"
  if (process.getuid?.() !== 0) return "a loopback capture (AF_PACKET) needs root"
  try {
    execFileSync("perl", ["-e", "1"], { stdio: "ignore" })
  } catch {
    return "a loopback capture needs perl"
  }
  return undefined
}

export interface Capture {
  /** Every datagram so far, markers left out, in the order they were sent. */
  readonly datagrams: () => ReadonlyArray<Datagram>
  /** Sends a marker and resolves once the capture saw it; gives its position in `datagrams`. */
  readonly mark: (label: string) => Promise<number>
  /** The marks so far: label and position (the number of datagrams captured before it). */
  readonly marks: () => ReadonlyMap<string, number>
  readonly stop: () => Promise<void>
}

const running = new Set<ChildProcess>()

/** Stops every capture still running (the tests' `afterEach`). */
export const stopAll = async (): Promise<void> => {
  const children = [...running]
  running.clear()
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve()
          child.once("exit", () => resolve())
          child.kill("SIGKILL")
        }),
    ),
  )
}

const parse = (line: string): Datagram | undefined => {
  const [src, srcPort, dst, dstPort, vtag, chunks] = line.split(" ")
  if (src === undefined || chunks === undefined) return undefined
  return {
    src,
    srcPort: Number(srcPort),
    dst: dst!,
    dstPort: Number(dstPort),
    vtag: Number(vtag),
    chunks:
      chunks === ""
        ? []
        : chunks.split(",").map((chunk) => {
            const [type, value] = chunk.split(":")
            return value === undefined
              ? { type: Number(type) }
              : { type: Number(type), value: Number(value) }
          }),
  }
}

/** Starts capturing the datagrams from or to `ports`; resolves once the capture runs. */
export const start = async (ports: ReadonlyArray<number>): Promise<Capture> => {
  const marker = Dgram.createSocket("udp4")
  await new Promise<void>((resolve) => marker.bind(0, "127.0.0.1", resolve))
  marker.unref()
  const markerPort = marker.address().port
  const child = spawn("perl", [script, ...ports.map(String), String(markerPort)], {
    stdio: ["ignore", "pipe", "pipe"],
  })
  running.add(child)
  const datagrams: Array<Datagram> = []
  const marks = new Map<string, number>()
  /** Marker id → position, as the capture reports them. */
  const seen = new Map<number, number>()
  let pending = ""
  let errors = ""
  child.stdout.on("data", (chunk: Buffer) => {
    pending += chunk.toString()
    const lines = pending.split("\n")
    pending = lines.pop()!
    for (const line of lines) {
      const datagram = parse(line)
      if (datagram === undefined) continue
      if (datagram.dstPort === markerPort && datagram.srcPort === markerPort) {
        seen.set(datagram.vtag, datagrams.length)
      } else datagrams.push(datagram)
    }
  })
  child.stderr.on("data", (chunk: Buffer) => {
    errors += chunk.toString()
  })
  const waitFor = <A>(what: string, check: () => A | undefined): Promise<A> =>
    Eventually.promise(
      `${what} (${errors})`,
      () => {
        const value = check()
        if (value === undefined && child.exitCode !== null)
          throw new Error(`the capture exited: ${errors}`)
        return value
      },
      { within: 10_000, every: 10 },
    )
  await waitFor("the capture listens", () => (errors.includes("listening") ? true : undefined))
  let nextMark = 1
  const mark = async (label: string): Promise<number> => {
    const id = nextMark++
    // A datagram shaped as SCTP (12-byte common header) whose tag is the marker's id.
    const bytes = Buffer.alloc(12)
    bytes.writeUInt32BE(id, 4)
    await new Promise<void>((resolve, reject) =>
      marker.send(bytes, markerPort, "127.0.0.1", (error) => (error ? reject(error) : resolve())),
    )
    const position = await waitFor(`marker ${label}`, () => seen.get(id))
    marks.set(label, position)
    return position
  }
  // The capture sees its first marker: it is reading the interface.
  await mark("start")
  return {
    datagrams: () => datagrams,
    mark,
    marks: () => marks,
    stop: async () => {
      running.delete(child)
      await new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        child.once("exit", () => resolve())
        child.kill("SIGKILL")
      })
      await new Promise<void>((resolve) => marker.close(() => resolve()))
    },
  }
}
