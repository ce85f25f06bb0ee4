/**
 * The HTTP/1.1 object server of the `tcp-repair` backend and its takeover: a GET of an
 * object answered with `Content-Length`, every connection checkpointed (the kernel TCP
 * layer's state and the HTTP layer's: object id, the sequence number of the response's
 * first byte) so that a server on another host can rebuild the very TCP connection and
 * finish the object for an unmodified client. A PUT is received as `upload.ts` describes.
 *
 * @internal
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { Effect } from "effect"
import type * as Checkpoint from "../../Checkpoint.ts"
import { CheckpointContributorFailed } from "../../CheckpointError.ts"
import type * as CheckpointStore from "../../CheckpointStore.ts"
import * as Contributor from "../../Contributor.ts"
import * as Kernel from "./kernelTcp.ts"
import * as L from "./libc.ts"
import { FLAG_ACK, FLAG_RST, RawTcp, type Segment } from "./rawTcp.ts"
import * as Upload from "./upload.ts"

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

/** The fixed facts of one transfer, the same on every server that carries it. */
interface Transfer {
  readonly bundleId: string
  readonly id: string
  readonly size: number
  readonly head: string
  readonly source: { readonly host: string; readonly port: number }
  readonly destination: { readonly host: string; readonly port: number }
  readonly sendIsn: number
  readonly recvIsn: number
  readonly objectSeq: number
  readonly kernel: KernelBlock
}

/** Where the counters of this server's socket start, in the connection's sequence numbers. */
interface Counters {
  /** Sequence number at which `tcpi_bytes_acked` is 0. */
  readonly ackedBase: number
  /** Sequence number at which `tcpi_bytes_received` is 0. */
  readonly receivedBase: number
  /** Sequence number of the first byte this server wrote through Node. */
  readonly writtenBase: number
}

/** The kernel and HTTP layers of one transfer, as contributors to its bundle. */
const transferBundle = (
  libc: L.Libc,
  fd: number,
  socket: net.Socket,
  transfer: Transfer,
  counters: Counters,
): Contributor.Bundle => {
  const horizon = transfer.objectSeq + transfer.size
  // Both blocks are fixed for the transfer: encoded once, not at every checkpoint.
  const kernelBlock = block(transfer.kernel)
  const httpBlock = block({ head: transfer.head } satisfies HttpBlock)
  const kernelTcp: Contributor.Contributor = {
    layer: "kernel-tcp",
    // One TCP_INFO read: the kernel's options and window were saved once, when the
    // connection was made (or rebuilt); only the acknowledgement moves.
    append: (draft) =>
      Effect.suspend(() => {
        // Node closed the descriptor (its number may already be another socket's).
        if (socket.destroyed)
          return Effect.fail(
            new CheckpointContributorFailed({
              layer: "kernel-tcp",
              phase: "append",
              detail: "the connection is closed",
            }),
          )
        const now = Kernel.tcpInfo(libc, fd)
        const acked = counters.ackedBase + now.bytesAcked
        return Effect.succeed(
          Contributor.putConnection(draft, {
            name: "data",
            role: "data",
            transport: "tcp",
            source: transfer.source,
            destination: transfer.destination,
            initialSeqSource: transfer.sendIsn,
            initialSeqDestination: transfer.recvIsn,
            currentSeqSource: Math.min(
              horizon,
              Math.max(acked, counters.writtenBase + socket.bytesWritten),
            ),
            currentSeqDestination: counters.receivedBase + now.bytesReceived,
            ackedSeqSource: acked,
            sendHorizonSeq: horizon,
            coverage: "source",
            object: { id: transfer.id, firstByteSeq: transfer.objectSeq, size: transfer.size },
            layers: { "kernel-tcp": kernelBlock },
          }),
        )
      }),
    restore: () => Effect.void,
    ready: Effect.void,
  }
  const http: Contributor.Contributor = {
    layer: "http/1.1",
    append: (draft) => Effect.succeed(Contributor.putLayer(draft, "http/1.1", httpBlock)),
    restore: () => Effect.void,
    ready: Effect.void,
  }
  return {
    id: transfer.bundleId,
    protocol: "http/1.1",
    contributors: () => [kernelTcp, http],
    register: () => Effect.die(new Error("a tcp-repair transfer's layers are fixed")),
  }
}

/**
 * Checkpoints a transfer through the store while it lasts: one write in flight at a time
 * (the store fences each on the previous), a request made meanwhile coalesced into one
 * write of the newest state, and the bundle finished when the connection closes. Then a
 * `checkpoints` event says how many were written and the largest step of the connection's
 * acknowledgement from one to the next: what a takeover may have had to refill.
 */
const checkpointing = (
  store: CheckpointStore.CheckpointStore["Service"],
  bundle: Contributor.Bundle,
  first: Effect.Effect<CheckpointStore.Ownership, unknown>,
  onEvent: (event: Record<string, unknown>) => void,
) => {
  let ownership: CheckpointStore.Ownership | undefined
  let inFlight = true
  let again = false
  let closed = false
  let written = 0
  let lastAcked: number | undefined
  let ackedStepMax = 0
  const landed = (checkpoint: Checkpoint.Checkpoint) => {
    written++
    const acked = checkpoint.connections[0]?.ackedSeqSource
    if (acked === undefined) return
    if (lastAcked !== undefined) ackedStepMax = Math.max(ackedStepMax, acked - lastAcked)
    lastAcked = acked
  }
  const failed = (error: unknown) =>
    onEvent({ t: "checkpoint-failed", bundleId: bundle.id, detail: String(error) })
  let running: Promise<void>
  const settle = () => {
    inFlight = false
    if (again) {
      again = false
      take()
    }
  }
  const take = (): void => {
    if (closed || ownership === undefined) return
    if (inFlight) {
      again = true
      return
    }
    inFlight = true
    running = Effect.runPromise(store.take(bundle, ownership, "bytes")).then(
      (done) => landed(done.checkpoint),
      failed,
    )
    void running.finally(settle)
  }
  running = Effect.runPromise(first).then((owned) => {
    ownership = owned
    landed(owned.latest())
  }, failed)
  void running.finally(settle)
  return {
    /** Asks for a checkpoint of the state as it is when the write before it is done. */
    take: (): void => {
      if (inFlight) again = true
      else take()
    },
    /** The connection closed: no more checkpoints, and the bundle goes. */
    close: (): void => {
      closed = true
      void running.then(() => {
        onEvent({ t: "checkpoints", bundleId: bundle.id, written, ackedStepMaxBytes: ackedStepMax })
        return Effect.runPromise(store.finish(bundle.id))
      })
    },
  }
}

export interface ServeOptions {
  /** Undefined: serve without checkpoints (the benchmark's baseline). */
  readonly libc: L.Libc | undefined
  readonly serverId: string
  readonly host: string
  readonly port: number
  readonly source: ObjectSource
  /** This server's checkpoint store (backend `tcp-repair`), shared with the takeover hosts. */
  readonly store: CheckpointStore.CheckpointStore["Service"]
  /** Object bytes read between two checkpoints of a transfer (at least). */
  readonly checkpointEveryBytes: number
  /** The least time between two checkpoints, up to 8 x `checkpointEveryBytes` (25 ms). */
  readonly checkpointGapMs?: number
  readonly nowMs: () => number
  readonly sleep: (ms: number) => Promise<void>
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
      const head = requested.slice(0, end + 4)
      if (head.startsWith("PUT ")) {
        // What came after the head is the body's start: the kernel acknowledged it.
        socket.pause()
        void receiveUpload(
          options,
          socket,
          bundleId,
          head,
          Buffer.from(requested.slice(end + 4), "latin1"),
        )
      } else respond(options, socket, bundleId, head)
    }
    socket.on("data", onData)
    socket.on("error", () => {})
  })
  return new Promise((resolve, reject) => {
    server.once("error", reject)
    // SO_REUSEPORT: an upload's connection is rebuilt in repair mode beside the listener.
    server.listen({ port: options.port, host: options.host, reusePort: true }, () =>
      resolve(server),
    )
  })
}

/**
 * How often a transfer is checkpointed. During a download a checkpoint only bounds what a
 * takeover refills: the takeover hears the client's acknowledgement and puts the bytes the
 * client has beyond the checkpoint's back in the send queue, read from the object (none is
 * sent again: a local copy). Each checkpoint costs this thread a store write (encoding,
 * MAC, a round trip: 0.6 ms in a loop, 2-3 ms amid a transfer on a loaded machine) and
 * the store a write; one per 4 MiB was 150 a second at 600 MiB/s, a quarter of the
 * transfer's time. So after `everyBytes` a checkpoint also waits for `gapMs` since the
 * last, but never past `stretchMax` x `everyBytes`: a refill of at most 32 MiB by default,
 * plus what went out while the write before was in the store's hands (one at a time; a
 * slow store stretches every cadence so), under a takeover's `refillBytesMax`.
 */
const checkpointGapMsDefault = 25
const stretchMax = 8

/** Whether a transfer's next checkpoint is due: `sinceBytes` read, `sinceMs` since the last. */
export const checkpointDue = (
  cadence: { readonly everyBytes: number; readonly gapMs: number },
  sinceBytes: number,
  sinceMs: number,
): boolean =>
  sinceBytes >= cadence.everyBytes &&
  (sinceBytes >= stretchMax * cadence.everyBytes || sinceMs >= cadence.gapMs)

/** When a transfer asks for a checkpoint. */
interface Cadence {
  readonly everyBytes: number
  readonly gapMs: number
  readonly nowMs: () => number
  readonly take: () => void
}

/** The object is read this many bytes at a time, into this many buffers that go round. */
const chunkBytes = 256 * 1024
const chunkBuffers = 4

/**
 * Sends the object from `offset` into the socket, then ends it; with a cadence, asks for
 * checkpoints as it reads (each chunk handed to the socket first). A few buffers go round,
 * each read into again once the socket has written it: a read stream's fresh 256 KiB
 * buffer per read was external memory at the transfer's rate, and the full collections it
 * set off took more of this thread than the sending (a 128 MiB download: 230 ms of CPU,
 * now 90; with checkpoints 480, now 150, on a loaded machine).
 */
const sendObject = (
  socket: net.Socket,
  file: string,
  offset: number,
  cadence: Cadence | undefined,
) => {
  let fd: number
  try {
    if (socket.destroyed) return
    fd = fs.openSync(file, "r")
  } catch {
    socket.destroy()
    return
  }
  const free = Array.from({ length: chunkBuffers }, () => Buffer.allocUnsafeSlow(chunkBytes))
  let position = offset
  let reading = false
  let stopped = false
  let fdOpen = true
  // Never while a read is in flight: the descriptor's number could be reused meanwhile.
  const stop = () => {
    stopped = true
    if (fdOpen && !reading) {
      fdOpen = false
      fs.close(fd, () => {})
    }
  }
  socket.once("close", stop)
  let sinceCheckpoint = 0
  let askedAtMs = cadence?.nowMs() ?? 0
  const read = (): void => {
    if (reading || stopped || free.length === 0) return
    const buffer = free.pop()!
    reading = true
    fs.read(fd, buffer, 0, chunkBytes, position, (error, n) => {
      reading = false
      if (stopped) return stop()
      if (error !== null || n === 0) {
        stop()
        if (error === null) socket.end()
        else socket.destroy()
        return
      }
      position += n
      socket.write(buffer.subarray(0, n), (failed) => {
        if (failed) return stop()
        free.push(buffer)
        read()
      })
      if (cadence !== undefined) {
        sinceCheckpoint += n
        const now = cadence.nowMs()
        if (checkpointDue(cadence, sinceCheckpoint, now - askedAtMs)) {
          sinceCheckpoint = 0
          askedAtMs = now
          cadence.take()
        }
      }
      read()
    })
  }
  read()
}

const cadence = (
  options: {
    readonly checkpointEveryBytes: number
    readonly checkpointGapMs?: number
    readonly nowMs: () => number
  },
  take: () => void,
): Cadence => ({
  everyBytes: options.checkpointEveryBytes,
  gapMs: options.checkpointGapMs ?? checkpointGapMsDefault,
  nowMs: options.nowMs,
  take,
})

/** The kernel and HTTP layers of an upload, as contributors to its bundle. */
const uploadBundle = (
  bundleId: string,
  flow: {
    readonly source: { readonly host: string; readonly port: number }
    readonly destination: { readonly host: string; readonly port: number }
  },
  initial: { readonly send: number; readonly receive: number },
  upload: Upload.UploadBlock,
  kernel: KernelBlock,
  stored: () => number,
): Contributor.Bundle => {
  const kernelTcp: Contributor.Contributor = {
    layer: "kernel-tcp",
    append: (draft) =>
      Effect.sync(() =>
        Contributor.putConnection(draft, {
          name: "data",
          role: "data",
          transport: "tcp",
          source: flow.source,
          destination: flow.destination,
          initialSeqSource: initial.send,
          initialSeqDestination: initial.receive,
          currentSeqSource: upload.serverSeq,
          // Stored bytes only: what the kernel took in is not counted until it is on disk.
          currentSeqDestination: upload.bodySeq + stored(),
          ackedSeqSource: upload.serverSeq,
          sendHorizonSeq: upload.serverSeq,
          coverage: "source",
          object: { id: upload.id, firstByteSeq: upload.bodySeq, size: upload.size },
          layers: { "kernel-tcp": block(kernel) },
        }),
      ),
    restore: () => Effect.void,
    ready: Effect.void,
  }
  const http: Contributor.Contributor = {
    layer: "http/1.1",
    append: (draft) => Effect.succeed(Contributor.putLayer(draft, "http/1.1", block(upload))),
    restore: () => Effect.void,
    ready: Effect.void,
  }
  return {
    id: bundleId,
    protocol: "http/1.1",
    contributors: () => [kernelTcp, http],
    register: () => Effect.die(new Error("a tcp-repair transfer's layers are fixed")),
  }
}

/**
 * A PUT: the connection goes muted (see `upload.ts`) before anything more is acknowledged,
 * is rebuilt in repair mode at the body's end, and the body is received, stored and
 * acknowledged by the program.
 */
const receiveUpload = async (
  options: ServeOptions,
  socket: net.Socket,
  bundleId: string,
  head: string,
  early: Buffer,
) => {
  const libc = options.libc
  const id = (head.split(" ")[1] ?? "").replace(/^\//, "")
  const size = Number(/\r\ncontent-length:[ \t]*(\d+)/i.exec(head)?.[1] ?? Number.NaN)
  if (
    libc === undefined ||
    objectPath(options.source, id) === undefined ||
    !Number.isSafeInteger(size)
  ) {
    socket.resume()
    socket.end("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    return
  }
  const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd
  Kernel.mute(libc, fd, true)
  // The body's bytes the kernel already acknowledged: in Node's buffer and the kernel's queue.
  const received: Array<Buffer> = [early]
  for (
    let chunk = socket.read() as Buffer | null;
    chunk !== null;
    chunk = socket.read() as Buffer | null
  )
    received.push(chunk)
  const scratch = Buffer.alloc(65_536)
  for (
    let n = libc.recv(fd, scratch, scratch.length, L.MSG_DONTWAIT);
    n > 0;
    n = libc.recv(fd, scratch, scratch.length, L.MSG_DONTWAIT)
  )
    received.push(Buffer.from(scratch.subarray(0, n)))
  const body = Buffer.concat(received)
  const info = Kernel.tcpInfo(libc, fd)
  const state = Kernel.save(libc, fd)
  const sendIsn = (state.sendSeq - 1 - info.bytesAcked + 2 * TWO_32) % TWO_32
  const recvIsn = (state.recvSeq - 1 - info.bytesReceived + 2 * TWO_32) % TWO_32
  const continued = /\r\nexpect:[ \t]*100-continue/i.test(head) && body.length === 0
  const block: Upload.UploadBlock = {
    kind: "upload",
    id,
    size,
    bodySeq: recvIsn + 1 + info.bytesReceived - body.length,
    serverSeq: sendIsn + 1 + info.bytesAcked + (continued ? Upload.continueLine.length : 0),
    continued,
  }
  const partial = Upload.partialPath(options.source.root, bundleId)
  const file = fs.openSync(partial, "w")
  fs.writeSync(file, body.subarray(0, size))
  fs.fsyncSync(file)
  fs.closeSync(file)
  const address = socket.address() as net.AddressInfo
  const flow = {
    local: { host: address.address, port: address.port },
    remote: { host: socket.remoteAddress!, port: socket.remotePort! },
  }
  // The same connection, muted, at the body's end: closed in repair mode (nothing sent) and
  // rebuilt at once; the client waits for "100 Continue" meanwhile, or its bytes are dropped
  // unacknowledged and sent again.
  Kernel.repairOn(libc, fd)
  socket.destroy()
  const timestamp =
    state.timestamp === undefined ? undefined : Kernel.timestampAfter(state.timestamp, 0)
  const rebuilt = Kernel.rebuild(libc, {
    local: flow.local,
    remote: flow.remote,
    sendSeq: wire(block.serverSeq),
    recvSeq: wire(block.bodySeq + size),
    state,
    timestamp,
  })
  Kernel.mute(libc, rebuilt, true)
  let stored = Math.min(body.length, size)
  const bundle = uploadBundle(
    bundleId,
    { source: flow.local, destination: flow.remote },
    { send: sendIsn, receive: recvIsn },
    block,
    { state: { ...state, timestamp }, savedAtMs: options.nowMs() },
    () => stored,
  )
  options.onEvent({ t: "upload", bundleId, id, size })
  await carryUpload(
    options,
    libc,
    rebuilt,
    flow,
    block,
    bundle,
    options.store.open(bundle),
    (n) => {
      stored = n
    },
    timestamp !== undefined,
    state.wscale?.receive ?? 0,
    bundleId,
  )
}

/** Receives an upload on a muted connection, checkpointing what is stored, then answers. */
const carryUpload = async (
  options: {
    readonly source: ObjectSource
    readonly store: CheckpointStore.CheckpointStore["Service"]
    readonly nowMs: () => number
    readonly sleep: (ms: number) => Promise<void>
    readonly onEvent: (event: Record<string, unknown>) => void
  },
  libc: L.Libc,
  fd: number,
  flow: Upload.Receiving["flow"],
  block: Upload.UploadBlock,
  bundle: Contributor.Bundle,
  first: Effect.Effect<CheckpointStore.Ownership, unknown>,
  setStored: (stored: number) => void,
  timestamps: boolean,
  receiveWscale: number,
  bundleId: string,
): Promise<Upload.ReceiveOutcome> => {
  const checkpoints = checkpointing(options.store, bundle, first, options.onEvent)
  const outcome = await Upload.receive({
    libc,
    fd,
    flow,
    block,
    root: options.source.root,
    bundleId,
    timestamps,
    receiveWscale,
    onStored: (stored) => {
      setStored(stored)
      checkpoints.take()
    },
    sleep: options.sleep,
    nowMs: options.nowMs,
    idleMsMax: 10_000,
  })
  if (outcome._tag === "Stored") {
    options.onEvent({ t: "stored", bundleId, id: block.id, size: block.size })
    outcome.socket.on("close", checkpoints.close)
  } else {
    libc.close(fd) // still in repair mode: closes without a FIN or RST
    checkpoints.close()
    options.onEvent({ t: "upload-refused", bundleId, detail: outcome.detail })
  }
  return outcome
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
    sendObject(socket, file, 0, undefined)
    return
  }
  const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd
  // Saved before the response's first byte is written: nothing of it is in the kernel yet.
  const info = Kernel.tcpInfo(libc, fd)
  const state = Kernel.save(libc, fd)
  const sendIsn = (state.sendSeq - 1 - info.bytesAcked + 2 * TWO_32) % TWO_32
  const recvIsn = (state.recvSeq - 1 - info.bytesReceived + 2 * TWO_32) % TWO_32
  const headSeq = sendIsn + 1 + info.bytesAcked
  const address = socket.address() as net.AddressInfo
  const transfer: Transfer = {
    bundleId,
    id,
    size,
    head,
    source: { host: address.address, port: address.port },
    destination: { host: socket.remoteAddress!, port: socket.remotePort! },
    sendIsn,
    recvIsn,
    objectSeq: headSeq + head.length,
    kernel: { state, savedAtMs: options.nowMs() },
  }
  const counters: Counters = {
    ackedBase: sendIsn + 1,
    receivedBase: recvIsn + 1,
    writtenBase: headSeq,
  }
  const bundle = transferBundle(libc, fd, socket, transfer, counters)
  // The first checkpoint claims the bundle, then reads the state as it is then: until its
  // write lands the transfer has no checkpoint and a takeover finds nothing to take.
  const checkpoints = checkpointing(
    options.store,
    bundle,
    options.store.open(bundle),
    options.onEvent,
  )
  options.onEvent({ t: "transfer", bundleId, id, size })
  socket.write(head)
  sendObject(socket, file, 0, cadence(options, checkpoints.take))
  socket.on("close", checkpoints.close)
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
  /** This server's checkpoint store: it adopts the bundle and checkpoints it on from here. */
  readonly store: CheckpointStore.CheckpointStore["Service"]
  /** The revision `claim` returned the checkpoint at (adopt is fenced on it). */
  readonly modRevision: number
  readonly checkpointEveryBytes: number
  readonly checkpointGapMs?: number
  readonly onEvent: (event: Record<string, unknown>) => void
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
      /** `Closed`: the client answered with a reset, it has no such connection any more. */
      readonly reason: "TooOld" | "BeyondSent" | "NoCheckpoint" | "Closed"
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
  const upload = http as unknown as Upload.UploadBlock
  if (upload.kind === "upload") return takeoverUpload(options, checkpoint, kernel, upload)
  const object = connection.object
  const headSeq = object.firstByteSeq - http.head.length
  const flow = { local: connection.source, remote: connection.destination }
  const recvSeq = wire(connection.currentSeqDestination)
  const ackedSeq = wire(connection.ackedSeqSource)
  // The timestamp clock goes on from the old server's, ahead of any stamp it sent.
  const timestamp =
    kernel.state.timestamp === undefined
      ? undefined
      : Kernel.timestampAfter(kernel.state.timestamp, options.nowMs() - kernel.savedAtMs)
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
    let reset = false
    for (let probe = 0; probe < options.probesMax && heard === undefined && !reset; probe++) {
      raw.send(ackedSeq - 1, recvSeq, FLAG_ACK, 0xffff, timestamp, probePayload)
      for (let waitedMs = 0; waitedMs < 600 && heard === undefined && !reset; waitedMs += 2) {
        await options.sleep(2)
        for (let segment = raw.poll(); segment !== undefined; segment = raw.poll())
          if ((segment.flags & FLAG_RST) !== 0) reset = true
          else if ((segment.flags & FLAG_ACK) !== 0) heard = segment
      }
    }
    // The client closed the connection (it had the whole response, or gave up) and answers
    // for a connection it does not know with a reset: nothing to take over.
    if (heard === undefined && reset)
      return {
        _tag: "Refused",
        reason: "Closed",
        detail: "the client answered with a reset: it has no such connection",
        reset: false,
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
    // The client has the whole response and acknowledged the FIN after it: the transfer
    // is over, there is nothing to take over, and nothing is sent (not even a reset).
    if (clientAckSeq === connection.sendHorizonSeq + 1)
      return {
        _tag: "Refused",
        reason: "BeyondSent",
        detail: "the client has the whole response and acknowledged its end",
        reset: false,
      }
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
    // From here this server carries the transfer: it owns the bundle and checkpoints it
    // (its own timestamp clock in the kernel block), so that a third server can take over.
    const transfer: Transfer = {
      bundleId: checkpoint.bundleId,
      id: object.id,
      size: object.size,
      head: http.head,
      source: connection.source,
      destination: connection.destination,
      sendIsn: connection.initialSeqSource,
      recvIsn: connection.initialSeqDestination,
      objectSeq: object.firstByteSeq,
      kernel: {
        state: {
          ...kernel.state,
          timestamp: Kernel.timestampNow(libc, fd, kernel.state.timestamp),
        },
        savedAtMs: options.nowMs(),
      },
    }
    const bundle = transferBundle(libc, fd, socket, transfer, {
      ackedBase: connection.ackedSeqSource,
      receivedBase: connection.currentSeqDestination,
      writtenBase: clientAckSeq,
    })
    const checkpoints = checkpointing(
      options.store,
      bundle,
      options.store.adopt(checkpoint, options.modRevision),
      options.onEvent,
    )
    checkpoints.take()
    socket.on("close", checkpoints.close)
    const file = objectPath(options.source, object.id)!
    if (objectOffset < object.size)
      sendObject(socket, file, objectOffset, cadence(options, checkpoints.take))
    else socket.end()
    return { _tag: "Resumed", socket, objectOffset, refilledBytes: beyondAcked }
  } finally {
    raw?.close()
    if (!handedOver) libc.close(fd) // still in repair mode: closes without a FIN or RST
  }
}

/**
 * Takes an upload over: the connection rebuilt muted at the body's end, the address
 * claimed, and the body received on from what the file holds (every byte the client saw
 * acknowledged is there).
 */
const takeoverUpload = async (
  options: TakeoverOptions,
  checkpoint: Checkpoint.Checkpoint,
  kernel: KernelBlock,
  upload: Upload.UploadBlock,
): Promise<TakeoverOutcome> => {
  const { libc } = options
  const connection = checkpoint.connections[0]!
  const timestamp =
    kernel.state.timestamp === undefined
      ? undefined
      : Kernel.timestampAfter(kernel.state.timestamp, options.nowMs() - kernel.savedAtMs)
  const flow = { local: connection.source, remote: connection.destination }
  const fd = Kernel.rebuild(libc, {
    ...flow,
    sendSeq: wire(upload.serverSeq),
    recvSeq: wire(upload.bodySeq + upload.size),
    state: kernel.state,
    timestamp,
  })
  try {
    Kernel.mute(libc, fd, true)
    await options.claimAddress()
  } catch (error) {
    libc.close(fd) // still in repair mode: closes without a FIN or RST
    throw error
  }
  let stored = 0
  const bundle = uploadBundle(
    checkpoint.bundleId,
    { source: connection.source, destination: connection.destination },
    { send: connection.initialSeqSource, receive: connection.initialSeqDestination },
    upload,
    { state: { ...kernel.state, timestamp }, savedAtMs: options.nowMs() },
    () => stored,
  )
  const outcome = await carryUpload(
    { ...options, source: options.source },
    libc,
    fd,
    flow,
    upload,
    bundle,
    options.store.adopt(checkpoint, options.modRevision),
    (n) => {
      stored = n
    },
    timestamp !== undefined,
    kernel.state.wscale?.receive ?? 0,
    checkpoint.bundleId,
  )
  return outcome._tag === "Stored"
    ? { _tag: "Resumed", socket: outcome.socket, objectOffset: outcome.from, refilledBytes: 0 }
    : { _tag: "Refused", reason: "TooOld", detail: outcome.detail, reset: outcome.reset }
}

/**
 * `length` bytes of the response (head then object) from `offset`: a takeover's refill (the
 * benchmark times it too).
 */
export const readResponse = (
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
