/**
 * Framed 256-byte messages per second over loopback TCP: `NodeTransport` (codec bytes, no
 * keep-alive) against a hand-written node:net echo with a u32 big-endian length prefix that
 * writes per message, measured in the same run with the same count and window.
 *
 * The client keeps `window` messages in flight: it sends that many, then one more for each
 * echo it receives, until `count` echoes are back. Each side runs a warm-up round, then
 * `rounds` measured rounds, alternating; the median of each is reported. The last line of
 * output is one JSON object: {"msgs_per_s", "baseline_msgs_per_s", "ratio"}.
 */
import * as net from "node:net"
import { Effect, Fiber, Stream } from "effect"
import * as Address from "../src/Address.ts"
import * as Codec from "../src/Codec.ts"
import * as NodeTransport from "../src/NodeTransport.ts"
import type { ConnectionOptions } from "../src/Options.ts"
import { Transport } from "../src/Transport.ts"

const messageBytes = 256
const count = 200_000
const window = 1_000
const rounds = 5
/** Any single round taking longer than this is a failure, not a slow result. */
const roundTimeoutMs = 60_000

const payload = new Uint8Array(messageBytes).fill(0x5a)

// --- Understudy transport -------------------------------------------------------------

const options: ConnectionOptions<Uint8Array> = { codec: Codec.bytes, keepAlive: false }

const transportRound = Effect.gen(function* () {
  const transport = yield* Transport
  const listener = yield* transport.listen(Address.tcp("127.0.0.1", 0), options)
  // The server echoes each received chunk as one batch.
  yield* Effect.forkScoped(
    Stream.runForEach(listener.connections, (conn) =>
      Effect.forkScoped(Stream.runForEachArray(conn.messages, (batch) => conn.sendAll(batch))),
    ),
  )
  const client = yield* transport.connect(listener.address, options)
  const started = performance.now()
  let sent = 0
  let received = 0
  const sendUpTo = (n: number) => {
    const batch: Array<Uint8Array> = []
    while (batch.length < n && sent < count) {
      batch.push(payload)
      sent++
    }
    return client.sendAll(batch)
  }
  const reader = yield* Effect.forkChild(
    Stream.runForEachArray(Stream.take(client.messages, count), (echoes) => {
      received += echoes.length
      return sendUpTo(echoes.length)
    }),
  )
  yield* sendUpTo(window)
  yield* Fiber.join(reader)
  const elapsedMs = performance.now() - started
  if (received !== count) throw new Error(`transport: ${received} of ${count} echoes`)
  return (count / elapsedMs) * 1000
}).pipe(Effect.scoped, Effect.timeout(roundTimeoutMs), Effect.provide(NodeTransport.layer))

// --- Hand-written node:net baseline ---------------------------------------------------

const frame = (() => {
  const out = Buffer.alloc(4 + messageBytes)
  out.writeUInt32BE(messageBytes, 0)
  out.set(payload, 4)
  return out
})()

/** Calls `onFrame` with each complete frame (prefix included) of a length-prefixed stream. */
const frameReader = (onFrame: (frame: Buffer) => void) => {
  let pending: Buffer = Buffer.alloc(0)
  return (chunk: Buffer) => {
    let bytes = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    let offset = 0
    while (bytes.length - offset >= 4) {
      const length = bytes.readUInt32BE(offset)
      if (bytes.length - offset - 4 < length) break
      onFrame(bytes.subarray(offset, offset + 4 + length))
      offset += 4 + length
    }
    bytes = bytes.subarray(offset)
    pending = bytes.length === 0 ? Buffer.alloc(0) : Buffer.from(bytes)
  }
}

const baselineRound = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const sockets = new Set<net.Socket>()
    const server = net.createServer((socket) => {
      sockets.add(socket)
      socket.setNoDelay(true)
      socket.on("error", reject)
      // Echo: one write per message, as a straightforward node:net server does (the frame
      // is written back from the received chunk, without a copy).
      socket.on(
        "data",
        frameReader((received) => socket.write(received)),
      )
    })
    const timer = setTimeout(() => finish(new Error("baseline round timed out")), roundTimeoutMs)
    const finish = (error: Error | undefined, rate?: number) => {
      clearTimeout(timer)
      for (const socket of sockets) socket.destroy()
      server.close()
      if (error !== undefined) reject(error)
      else resolve(rate!)
    }
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      const { port } = server.address() as net.AddressInfo
      const client = net.connect({ host: "127.0.0.1", port })
      sockets.add(client)
      client.setNoDelay(true)
      client.on("error", (error) => finish(error))
      let sent = 0
      let received = 0
      let started = 0
      client.on(
        "data",
        frameReader(() => {
          received++
          if (sent < count) {
            client.write(frame)
            sent++
          }
          if (received === count) finish(undefined, (count / (performance.now() - started)) * 1000)
        }),
      )
      client.on("connect", () => {
        started = performance.now()
        for (; sent < window; sent++) client.write(frame)
      })
    })
  })

// --- Run ------------------------------------------------------------------------------

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

const main = async () => {
  // Warm-up: JIT and socket buffers; not counted.
  await Effect.runPromise(transportRound)
  await baselineRound()
  const transportRates: Array<number> = []
  const baselineRates: Array<number> = []
  for (let round = 0; round < rounds; round++) {
    transportRates.push(await Effect.runPromise(transportRound))
    baselineRates.push(await baselineRound())
  }
  const msgsPerS = Math.round(median(transportRates))
  const baselineMsgsPerS = Math.round(median(baselineRates))
  const ratio = Math.round((msgsPerS / baselineMsgsPerS) * 1000) / 1000
  const format = (rate: number) => Math.round(rate).toLocaleString("en-US").padStart(12)
  console.log(
    `${count.toLocaleString("en-US")} messages of ${messageBytes} B, ${window} in flight, loopback TCP, median of ${rounds}`,
  )
  console.log("")
  console.log("| implementation              |       msgs/s | rounds")
  console.log("| --------------------------- | ------------ | ------")
  console.log(
    `| NodeTransport (Codec.bytes) | ${format(msgsPerS)} | ${transportRates.map((r) => Math.round(r)).join(", ")}`,
  )
  console.log(
    `| node:net u32 length prefix  | ${format(baselineMsgsPerS)} | ${baselineRates.map((r) => Math.round(r)).join(", ")}`,
  )
  console.log("")
  console.log(
    JSON.stringify({ msgs_per_s: msgsPerS, baseline_msgs_per_s: baselineMsgsPerS, ratio }),
  )
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  },
)
