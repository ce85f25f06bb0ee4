/**
 * Uploads of the `tcp-repair` backend: an HTTP/1.1 PUT with `Content-Length`, from an
 * unmodified client (`curl -T`), stored once through its server's death.
 *
 * The kernel acknowledges bytes when they arrive, before the program has stored them (even
 * in repair mode); the client then frees them, so a death before they are stored would lose
 * them for good. So while the body comes, the kernel never sees it: the connection is a
 * socket in repair mode at the body's end, muted by a socket filter that drops every
 * segment of the client before TCP (no acknowledgement, no reset). The server reads the
 * client's segments through a raw socket, appends them to the file, syncs it, and only then
 * acknowledges them itself. Whatever the client saw acknowledged is therefore stored: a
 * takeover server goes on from the stored length (the client sends again from its own first
 * unacknowledged byte, never beyond what was stored), and the checkpoint counts stored bytes
 * only. When the body is whole the file is published under its name, the filter goes, the
 * connection leaves repair mode and the response goes through Node.
 *
 * @internal
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import * as Kernel from "./kernelTcp.ts"
import type * as L from "./libc.ts"
import { FLAG_ACK, FLAG_PSH, FLAG_RST, RawTcp, type Segment } from "./rawTcp.ts"

const TWO_32 = 2 ** 32
const wire = (seq: number): number => seq % TWO_32
const distance = (from: number, to: number): number => {
  const delta = (to - from + TWO_32) % TWO_32
  return delta >= 2 ** 31 ? delta - TWO_32 : delta
}

/** The window the server offers while it stores the body. */
const windowBytes = 256 * 1024
export const continueLine = "HTTP/1.1 100 Continue\r\n\r\n"
const created = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

/** Where a body is stored until it is whole (then renamed to `id`). */
export const partialPath = (root: string, bundleId: string): string =>
  path.join(root, `.upload-${bundleId}`)

/** The HTTP layer's block of an upload. */
export interface UploadBlock {
  readonly kind: "upload"
  readonly id: string
  readonly size: number
  /** Sequence number (unwrapped) of the body's first byte. */
  readonly bodySeq: number
  /** Sequence number (unwrapped) of the server's next byte: after `100 Continue`, if sent. */
  readonly serverSeq: number
  /** Whether `100 Continue` was asked for (it ends at `serverSeq`). */
  readonly continued: boolean
}

export interface Receiving {
  readonly libc: L.Libc
  readonly fd: number
  readonly flow: {
    readonly local: { readonly host: string; readonly port: number }
    readonly remote: { readonly host: string; readonly port: number }
  }
  readonly block: UploadBlock
  readonly root: string
  readonly bundleId: string
  /** The muted connection's timestamp clock (undefined without timestamps). */
  readonly timestamps: boolean
  readonly receiveWscale: number
  /** Called with the stored length after each sync (the caller checkpoints it). */
  readonly onStored: (stored: number) => void
  readonly sleep: (ms: number) => Promise<void>
  readonly nowMs: () => number
  /** Gives up after this long without a byte from the client. */
  readonly idleMsMax: number
}

export type ReceiveOutcome =
  | {
      readonly _tag: "Stored"
      readonly socket: net.Socket
      /** The stored length this server started from. */
      readonly from: number
    }
  | { readonly _tag: "Refused"; readonly detail: string; readonly reset: boolean }

/**
 * Receives the body on a muted connection (repair mode, filter attached, at the body's end)
 * from what the file already holds, then answers `201 Created`.
 */
export const receive = async (options: Receiving): Promise<ReceiveOutcome> => {
  const { libc, fd, block } = options
  const partial = partialPath(options.root, options.bundleId)
  const file = fs.openSync(partial, "a")
  let stored = Math.min(fs.fstatSync(file).size, options.block.size)
  const from = stored
  const raw = new RawTcp(libc, options.flow)
  let handedOver = false
  try {
    let echo = 0
    let sentAtMs = -1
    const clock = () => (options.timestamps ? Kernel.timestampNow(libc, fd, 0) : undefined)
    const field = Math.min(0xffff, windowBytes >> options.receiveWscale)
    const acknowledge = () => {
      raw.send(
        wire(block.serverSeq),
        wire(block.bodySeq + stored),
        FLAG_ACK,
        field,
        clock(),
        undefined,
        echo,
      )
      sentAtMs = options.nowMs()
    }
    const sendContinue = () =>
      raw.send(
        wire(block.serverSeq - continueLine.length),
        wire(block.bodySeq + stored),
        FLAG_ACK | FLAG_PSH,
        field,
        clock(),
        Buffer.from(continueLine, "latin1"),
        echo,
      )
    let continueAcked = !block.continued
    if (!continueAcked) sendContinue()
    // Three identical acknowledgements: a client waiting on its retransmission timer (its
    // server died) sends again at once (fast retransmit), from its first unacknowledged byte.
    for (let i = 0; i < 3; i++) acknowledge()
    let progressAtMs = options.nowMs()
    let clientSeq: number | undefined
    while (stored < block.size) {
      await options.sleep(2)
      const chunks: Array<Buffer> = []
      let next = block.bodySeq + stored
      let ahead = false
      for (let segment: Segment | undefined = raw.poll(); segment; segment = raw.poll()) {
        if ((segment.flags & FLAG_RST) !== 0)
          return { _tag: "Refused", detail: "the client reset the connection", reset: false }
        if (segment.tsval !== undefined) echo = segment.tsval
        if (!continueAcked && distance(wire(block.serverSeq), segment.ack) >= 0)
          continueAcked = true
        if (segment.payloadBytes === 0) continue
        clientSeq = segment.seq
        const offset = distance(wire(next), segment.seq)
        // Beyond the next byte to store (a segment lost, or the client went on after a
        // takeover): acknowledged again below, so the client sends the missing bytes.
        if (offset > 0) ahead = true
        if (offset > 0 || offset + segment.payloadBytes <= 0) continue
        const fresh = segment.payload.subarray(
          -offset,
          Math.min(segment.payloadBytes, -offset + block.size - (next - block.bodySeq)),
        )
        chunks.push(fresh)
        next += fresh.length
      }
      const nowMs = options.nowMs()
      if (chunks.length > 0) {
        for (const chunk of chunks) fs.writeSync(file, chunk)
        fs.fsyncSync(file)
        stored = next - block.bodySeq
        progressAtMs = nowMs
        options.onStored(stored)
        acknowledge()
      } else if (ahead || nowMs - sentAtMs > 200) {
        // Our last acknowledgement may have been lost, or the client is past a gap.
        if (!continueAcked) sendContinue()
        acknowledge()
      }
      // Every acknowledgement followed a sync, so the client never holds back a byte that
      // is not stored; one that sends nothing the file can take (the file was lost, or the
      // client gave up) is refused, with a reset at its own sequence number when heard.
      if (nowMs - progressAtMs > options.idleMsMax) {
        if (clientSeq !== undefined)
          raw.send(wire(block.serverSeq), clientSeq, FLAG_RST | FLAG_ACK, 0)
        return {
          _tag: "Refused",
          detail: `no byte the file can take in ${options.idleMsMax} ms (${stored} stored)`,
          reset: clientSeq !== undefined,
        }
      }
    }
    fs.closeSync(file)
    fs.renameSync(partial, path.join(options.root, block.id))
    Kernel.mute(libc, fd, false)
    Kernel.leaveRepair(libc, fd)
    const socket = new net.Socket({ fd, readable: true, writable: true })
    handedOver = true
    socket.on("error", () => {})
    socket.end(created)
    return { _tag: "Stored", socket, from }
  } finally {
    raw.close()
    if (!handedOver) {
      try {
        fs.closeSync(file)
      } catch {
        // Closed already.
      }
    }
  }
}
