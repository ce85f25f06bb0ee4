/**
 * The HTTP/1.1 object server of the `tcp-repair` backend and its takeover: a GET of an
 * object answered with `Content-Length`, every connection checkpointed (the kernel TCP
 * layer's state and the HTTP layer's: object id, the sequence number of the response's
 * first byte) so that a server on another host can rebuild the very TCP connection and
 * finish the object for an unmodified client.
 *
 * @internal
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import * as Checkpoint from "../../Checkpoint.ts"
import * as Kernel from "./kernelTcp.ts"
import type * as L from "./libc.ts"
import { FLAG_ACK, FLAG_RST, RawTcp, type Segment } from "./rawTcp.ts"

const TWO_32 = 2 ** 32
const wire = (seq: number): number => seq % TWO_32

/** Bytes from one wire sequence number to another, `to - from`, in [-2^31, 2^31). */
const distance = (from: number, to: number): number => {
  const delta = (to - from + TWO_32) % TWO_32
  return delta >= 2 ** 31 ? delta - TWO_32 : delta
}

/** Where a server finds objects: `id` names a file in `root`. */
export interface ObjectSource {
  readonly root: string
}

const objectPath = (source: ObjectSource, id: string): string | undefined =>
  /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/.test(id) ? path.join(source.root, id) : undefined

/** The HTTP layer's block: the response head, byte for byte. */
interface HttpBlock {
  readonly head: string
}

/** The kernel layer's block: what `Kernel.save` read, and when (ms since the epoch). */
interface KernelBlock {
  readonly state: Kernel.KernelTcpState
  readonly savedAtMs: number
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const block = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value))
const unblock = <A>(bytes: Uint8Array | undefined): A | undefined =>
  bytes === undefined ? undefined : (JSON.parse(decoder.decode(bytes)) as A)

/** A directory both hosts reach (shared storage), one file per bundle, replaced atomically. */
export class DirectoryStore {
  readonly directory: string
  constructor(directory: string) {
    this.directory = directory
  }
  write(checkpoint: Checkpoint.Checkpoint): void {
    const encoded = Checkpoint.encode(checkpoint)
    if (encoded._tag === "Failure") throw encoded.failure
    const file = path.join(this.directory, `${checkpoint.bundleId}.json`)
    fs.writeFileSync(`${file}.tmp`, encoded.success)
    fs.renameSync(`${file}.tmp`, file)
  }
  remove(bundleId: string): void {
    fs.rmSync(path.join(this.directory, `${bundleId}.json`), { force: true })
  }
  readAll(): Array<Checkpoint.Checkpoint> {
    const found: Array<Checkpoint.Checkpoint> = []
    for (const name of fs.readdirSync(this.directory)) {
      if (!name.endsWith(".json")) continue
      const decoded = Checkpoint.decode(fs.readFileSync(path.join(this.directory, name)))
      if (decoded._tag === "Success" && decoded.success.backend === "tcp-repair")
        found.push(decoded.success)
    }
    return found
  }
}

export interface ServeOptions {
  /** Undefined: serve without checkpoints (the benchmark's baseline). */
  readonly libc: L.Libc | undefined
  readonly serverId: string
  readonly host: string
  readonly port: number
  readonly source: ObjectSource
  readonly store: DirectoryStore
  /** Object bytes read between two checkpoints of a transfer. */
  readonly checkpointEveryBytes: number
  readonly nowMs: () => number
  readonly onEvent: (event: Record<string, unknown>) => void
}

/** Starts the object server; resolves with it listening. */
export const serve = (options: ServeOptions): Promise<net.Server> => {
  let connectionCount = 0
  const server = net.createServer({ noDelay: true }, (socket) => {
    const bundleId = `${options.serverId}-${++connectionCount}-${socket.remotePort}`
    let requested = ""
    const onData = (chunk: Buffer) => {
      requested += chunk.toString("latin1")
      const end = requested.indexOf("\r\n\r\n")
      if (end < 0) {
        if (requested.length > 16 * 1024) socket.destroy()
        return
      }
      socket.off("data", onData)
      respond(options, socket, bundleId, requested.slice(0, end + 4))
    }
    socket.on("data", onData)
    socket.on("error", () => {})
  })
  return new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(options.port, options.host, () => resolve(server))
  })
}

const respond = (options: ServeOptions, socket: net.Socket, bundleId: string, request: string) => {
  const [method, target] = request.split(" ")
  const id = (target ?? "").replace(/^\//, "")
  const file = objectPath(options.source, id)
  const size = file !== undefined && fs.existsSync(file) ? fs.statSync(file).size : undefined
  if (method !== "GET" || file === undefined || size === undefined) {
    socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    return
  }
  const head = `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${size}\r\nConnection: close\r\n\r\n`
  const libc = options.libc
  if (libc === undefined) {
    socket.write(head)
    fs.createReadStream(file, { highWaterMark: 256 * 1024 }).pipe(socket)
    return
  }
  const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd
  // Saved before the response's first byte is written: nothing of it is in the kernel yet.
  const info = Kernel.tcpInfo(libc, fd)
  const state = Kernel.save(libc, fd)
  const savedAtMs = options.nowMs()
  const sendIsn = (state.sendSeq - 1 - info.bytesAcked + 2 * TWO_32) % TWO_32
  const recvIsn = (state.recvSeq - 1 - info.bytesReceived + 2 * TWO_32) % TWO_32
  const headSeq = sendIsn + 1 + info.bytesAcked
  const objectSeq = headSeq + head.length
  const horizon = objectSeq + size
  const address = socket.address() as net.AddressInfo
  let generation = 0
  let checkpointedAcked = -1
  const checkpoint = () => {
    const now = Kernel.tcpInfo(libc, fd)
    const acked = sendIsn + 1 + now.bytesAcked
    if (acked === checkpointedAcked) return
    checkpointedAcked = acked
    options.store.write({
      version: 1,
      backend: "tcp-repair",
      bundleId,
      serverId: options.serverId,
      takenAtMs: options.nowMs(),
      generation: ++generation,
      protocol: "http/1.1",
      resumeCounter: 0,
      connections: [
        {
          name: "data",
          role: "data",
          transport: "tcp",
          source: { host: address.address, port: address.port },
          destination: { host: socket.remoteAddress!, port: socket.remotePort! },
          initialSeqSource: sendIsn,
          initialSeqDestination: recvIsn,
          currentSeqSource: Math.min(horizon, Math.max(acked, headSeq + socket.bytesWritten)),
          currentSeqDestination: recvIsn + 1 + now.bytesReceived,
          ackedSeqSource: acked,
          sendHorizonSeq: horizon,
          coverage: "source",
          object: { id, firstByteSeq: objectSeq, size },
          layers: { "kernel-tcp": block({ state, savedAtMs } satisfies KernelBlock) },
        },
      ],
      layers: { "http/1.1": block({ head } satisfies HttpBlock) },
    })
  }
  checkpoint()
  options.onEvent({ t: "transfer", bundleId, id, size })
  socket.write(head)
  const stream = fs.createReadStream(file, { highWaterMark: 256 * 1024 })
  let sinceCheckpoint = 0
  stream.on("data", (chunk) => {
    sinceCheckpoint += chunk.length
    if (sinceCheckpoint >= options.checkpointEveryBytes) {
      sinceCheckpoint = 0
      checkpoint()
    }
  })
  stream.pipe(socket)
  socket.on("close", () => options.store.remove(bundleId))
}

export interface TakeoverOptions {
  readonly libc: L.Libc
  readonly source: ObjectSource
  readonly checkpoint: Checkpoint.Checkpoint
  /** Makes the service address this host's and announces it (gratuitous ARP). */
  readonly claimAddress: () => Promise<void>
  readonly nowMs: () => number
  readonly sleep: (ms: number) => Promise<void>
  /** Probes sent before giving up on hearing the client; it answers one per 500 ms. */
  readonly probesMax: number
  /** The most bytes the client may hold beyond the checkpoint's acknowledgement. */
  readonly refillBytesMax: number
}

export type TakeoverOutcome =
  | {
      readonly _tag: "Resumed"
      readonly socket: net.Socket
      /** Offset in the object of the first byte this server sends. */
      readonly objectOffset: number
      /** Bytes the client had beyond the checkpoint's acknowledgement. */
      readonly refilledBytes: number
    }
  | {
      readonly _tag: "Refused"
      readonly reason: "TooOld" | "BeyondSent" | "NoCheckpoint"
      readonly detail: string
      /** Whether the client was sent a reset (it was heard, so its sequence number is known). */
      readonly reset: boolean
    }

/**
 * Takes a connection over: rebuild in repair mode, claim the address, hear the client's
 * acknowledgement, compare it with the checkpoint, put back what the client already has,
 * then leave repair mode and send the object from the exact byte. A client that
 * acknowledged what the checkpoint can not cover gets a reset at its own sequence number.
 */
export const takeover = async (options: TakeoverOptions): Promise<TakeoverOutcome> => {
  const { libc, checkpoint } = options
  const connection = checkpoint.connections[0]
  const kernel = unblock<KernelBlock>(connection?.layers["kernel-tcp"])
  const http = unblock<HttpBlock>(checkpoint.layers["http/1.1"])
  if (
    connection === undefined ||
    kernel === undefined ||
    http === undefined ||
    connection.object === undefined
  )
    return {
      _tag: "Refused",
      reason: "NoCheckpoint",
      detail: "no kernel, HTTP or object block",
      reset: false,
    }
  const object = connection.object
  const headSeq = object.firstByteSeq - http.head.length
  const flow = { local: connection.source, remote: connection.destination }
  const recvSeq = wire(connection.currentSeqDestination)
  const ackedSeq = wire(connection.ackedSeqSource)
  // The timestamp clock goes on from the old server's (1 per ms) with a margin: the client
  // drops segments stamped before the last one it saw (PAWS).
  const timestamp =
    kernel.state.timestamp === undefined
      ? undefined
      : (kernel.state.timestamp + (options.nowMs() - kernel.savedAtMs) + 1_000) >>> 0
  const fd = Kernel.rebuild(libc, {
    local: flow.local,
    remote: flow.remote,
    sendSeq: ackedSeq,
    recvSeq,
    state: kernel.state,
    timestamp,
  })
  let raw: RawTcp | undefined
  let handedOver = false
  try {
    await options.claimAddress()
    raw = new RawTcp(libc, flow)
    // A segment below the client's next expected byte: it answers with its acknowledgement.
    // It carries the one byte before the checkpoint's acknowledgement, the very byte the
    // client already has (a retransmission to it): the client answers a segment with data
    // at once, where it answers a bare ACK out of its window at most once per 500 ms.
    const probeOffset = connection.ackedSeqSource - 1 - headSeq
    const probePayload =
      probeOffset >= 0
        ? readResponse(options.source, object.id, http.head, probeOffset, 1)
        : Buffer.alloc(0)
    let heard: Segment | undefined
    for (let probe = 0; probe < options.probesMax && heard === undefined; probe++) {
      raw.send(ackedSeq - 1, recvSeq, FLAG_ACK, 0xffff, timestamp, probePayload)
      for (let waitedMs = 0; waitedMs < 600 && heard === undefined; waitedMs += 2) {
        await options.sleep(2)
        for (let segment = raw.poll(); segment !== undefined; segment = raw.poll())
          if ((segment.flags & FLAG_ACK) !== 0 && (segment.flags & FLAG_RST) === 0) heard = segment
      }
    }
    if (heard === undefined)
      return {
        _tag: "Refused",
        reason: "NoCheckpoint",
        detail: `the client answered none of ${options.probesMax} probes`,
        reset: false,
      }
    const clientAck = heard.ack
    const beyondAcked = distance(ackedSeq, clientAck)
    const refuse = (reason: "TooOld" | "BeyondSent", detail: string): TakeoverOutcome => {
      // A reset is accepted only at the client's own next sequence number: its ack.
      raw!.send(clientAck, recvSeq, FLAG_RST | FLAG_ACK, 0)
      return { _tag: "Refused", reason, detail, reset: true }
    }
    if (beyondAcked < 0)
      return refuse(
        "TooOld",
        `the client acknowledged ${-beyondAcked} bytes below the checkpoint's acknowledgement`,
      )
    const clientAckSeq = connection.ackedSeqSource + beyondAcked
    if (clientAckSeq > connection.sendHorizonSeq)
      return refuse(
        "BeyondSent",
        `the client acknowledged ${clientAckSeq - connection.sendHorizonSeq} bytes beyond the object's end`,
      )
    if (beyondAcked > options.refillBytesMax)
      return refuse(
        "TooOld",
        `the checkpoint is ${beyondAcked} bytes behind the client, above ${options.refillBytesMax}`,
      )
    // What the client already has goes back in the send queue as sent (it acknowledged it),
    // so the rebuilt socket's next byte is the client's next byte.
    const refill = readResponse(
      options.source,
      object.id,
      http.head,
      connection.ackedSeqSource - headSeq,
      beyondAcked,
    )
    Kernel.fillSentQueue(libc, fd, refill)
    if (Kernel.outqBytes(libc, fd) !== beyondAcked)
      throw new Kernel.KernelCallFailed("the refilled send queue is not what was put back")
    Kernel.leaveRepair(libc, fd)
    const socket = new net.Socket({ fd, readable: true, writable: true })
    handedOver = true
    socket.on("error", () => {})
    const responseOffset = clientAckSeq - headSeq
    if (responseOffset < http.head.length)
      socket.write(Buffer.from(http.head.slice(responseOffset), "latin1"))
    const objectOffset = Math.max(0, clientAckSeq - object.firstByteSeq)
    const file = objectPath(options.source, object.id)!
    if (objectOffset < object.size)
      fs.createReadStream(file, { start: objectOffset, highWaterMark: 256 * 1024 }).pipe(socket)
    else socket.end()
    return { _tag: "Resumed", socket, objectOffset, refilledBytes: beyondAcked }
  } finally {
    raw?.close()
    if (!handedOver) libc.close(fd) // still in repair mode: closes without a FIN or RST
  }
}

/** `length` bytes of the response (head then object) from `offset`. */
const readResponse = (
  source: ObjectSource,
  id: string,
  head: string,
  offset: number,
  length: number,
): Buffer => {
  const out = Buffer.alloc(length)
  const headBytes = Buffer.from(head, "latin1")
  let written = 0
  if (offset < headBytes.length)
    written = headBytes.copy(out, 0, offset, Math.min(headBytes.length, offset + length))
  if (written === length) return out
  const file = fs.openSync(objectPath(source, id)!, "r")
  try {
    let position = offset + written - headBytes.length
    while (written < length) {
      const read = fs.readSync(file, out, written, length - written, position)
      if (read <= 0) throw new Error("the object is shorter than its checkpoint")
      written += read
      position += read
    }
  } finally {
    fs.closeSync(file)
  }
  return out
}
