/**
 * Simulated TCP for `SimNet`: a `Pipe` carries segments one way between two hosts, reliably
 * and in order, each arriving after the link's latency (plus a retransmission delay when the
 * link "loses" it), and held back while a partition cuts the way (TCP would retransmit
 * until it heals or the connection times out). A `SimEndpoint` is one side of a connection,
 * seen by the connection core as a `Link`.
 *
 * Everything here runs synchronously inside the network's scheduler fiber, or inside the
 * caller of a `Link` method; events are reported to the core only from the scheduler.
 */
import type { StreamAddress } from "../Address.ts"
import type { Link, LinkHandlers } from "./link.ts"
import type { SimScheduler } from "./simScheduler.ts"

/** What a pipe carries. `syn` / `synack` open a connection; a `reset` answers a `syn` to refuse. */
export type Segment =
  | { readonly kind: "syn" }
  | { readonly kind: "synack" }
  | { readonly kind: "data"; readonly bytes: Uint8Array }
  | { readonly kind: "end" }
  | { readonly kind: "reset"; readonly detail: string }

/** What a pipe needs from the network around it. */
export interface SimWorld {
  readonly scheduler: SimScheduler
  readonly record: (kind: string, from: string, to: string, detail: string) => void
  /** Whether a partition cuts the way from one host to another now. */
  readonly isCut: (fromHost: string, toHost: string) => boolean
  readonly isUp: (host: string) => boolean
  /** One-way delay of a stream segment: latency, plus the retransmission delay when lost. */
  readonly streamDelay: (
    fromHost: string,
    toHost: string,
  ) => { readonly delayMs: number; readonly lost: boolean }
  /** Pipes that a partition holds; `heal` retimes them. */
  readonly stalled: Set<Pipe>
  /** `write` returns false past this many unread bytes in one direction. */
  readonly highWaterBytes: number
  /** Past this many unread bytes in one direction the connection is reset (a writer ignored backpressure). */
  readonly bufferedBytesMax: number
  /** The endpoint no longer takes part in its host's crash handling nor holds its port. */
  readonly release: (endpoint: SimEndpoint) => void
}

const describeSegment = (segment: Segment): string => {
  switch (segment.kind) {
    case "data":
      return `${segment.bytes.byteLength} B`
    case "reset":
      return `reset (${segment.detail})`
    default:
      return segment.kind
  }
}

interface InFlight {
  readonly segment: Segment
  dueAtMs: number
}

/** Compacts the in-flight array once this many delivered entries sit before its head. */
const compactAfter = 1024

/** One direction of a connection, from `fromHost` to `toHost`. */
export class Pipe {
  private inFlight: Array<InFlight> = []
  private head = 0
  private lastDueAtMs = Number.NEGATIVE_INFINITY
  /** Bytes written but not yet read by the receiving side's handler. */
  unackedBytes = 0
  stalled = false
  /**
   * Who gets the segments; set by whoever opens or accepts the connection. Returns why the
   * segment was dropped, if it was.
   */
  receiver: ((segment: Segment) => string | undefined) | undefined = undefined
  /** Whose `onDrain` fires when `unackedBytes` falls back. */
  sender: SimEndpoint | undefined = undefined

  readonly world: SimWorld
  readonly fromHost: string
  readonly toHost: string
  readonly fromLabel: string
  readonly toLabel: string

  constructor(
    world: SimWorld,
    fromHost: string,
    toHost: string,
    fromLabel: string,
    toLabel: string,
  ) {
    this.world = world
    this.fromHost = fromHost
    this.toHost = toHost
    this.fromLabel = fromLabel
    this.toLabel = toLabel
  }

  get pending(): number {
    return this.inFlight.length - this.head
  }

  /** Sends a segment; `kind` names it in the trace. */
  send(segment: Segment, kind: string): void {
    const { world } = this
    const now = world.scheduler.nowMs()
    const { delayMs, lost } = world.streamDelay(this.fromHost, this.toHost)
    world.record(kind, this.fromLabel, this.toLabel, describeSegment(segment))
    if (lost) world.record("retransmit", this.fromLabel, this.toLabel, describeSegment(segment))
    // TCP delivers in order: nothing overtakes what was sent before it.
    const dueAtMs = Math.max(this.lastDueAtMs, now + delayMs)
    this.lastDueAtMs = dueAtMs
    this.inFlight.push({ segment, dueAtMs })
    world.scheduler.at(dueAtMs, () => this.pump())
  }

  /** Delivers, in order, every segment that is due, unless a partition holds the way. */
  pump(): void {
    const { world } = this
    const now = world.scheduler.nowMs()
    // Bounded by the number of segments in flight.
    while (this.head < this.inFlight.length) {
      const next = this.inFlight[this.head]!
      if (next.dueAtMs > now) return
      if (world.isCut(this.fromHost, this.toHost)) {
        if (!this.stalled) {
          this.stalled = true
          world.stalled.add(this)
          world.record(
            "hold",
            this.fromLabel,
            this.toLabel,
            `${this.pending} segment(s): partition`,
          )
        }
        return
      }
      this.head++
      if (this.head >= compactAfter && this.head * 2 >= this.inFlight.length) {
        this.inFlight = this.inFlight.slice(this.head)
        this.head = 0
      }
      const dropped = this.receiver === undefined ? "nobody receives" : this.receiver(next.segment)
      const what = describeSegment(next.segment)
      if (dropped === undefined) world.record("deliver", this.fromLabel, this.toLabel, what)
      else world.record("drop", this.fromLabel, this.toLabel, `${what}: ${dropped}`)
    }
  }

  /** After a heal: what the partition held leaves now and arrives after the latency. */
  retime(): void {
    this.stalled = false
    const { world } = this
    const now = world.scheduler.nowMs()
    let previous = Number.NEGATIVE_INFINITY
    for (let index = this.head; index < this.inFlight.length; index++) {
      const entry = this.inFlight[index]!
      if (entry.dueAtMs <= now || entry.dueAtMs < previous) {
        entry.dueAtMs = Math.max(
          previous,
          now + world.streamDelay(this.fromHost, this.toHost).delayMs,
        )
      }
      previous = entry.dueAtMs
      world.scheduler.at(entry.dueAtMs, () => this.pump())
    }
    this.lastDueAtMs = Math.max(this.lastDueAtMs, previous)
  }

  /** The receiving side read (or discarded) `bytes`: may let the sender write again. */
  consumed(bytes: number): void {
    this.unackedBytes -= bytes
    const sender = this.sender
    if (sender?.wantDrain && this.unackedBytes <= this.world.highWaterBytes) {
      sender.wantDrain = false
      sender.reportDrain()
    }
  }
}

/**
 * One side of a simulated connection. `finished` once `onEnd` / `onReset` was reported or
 * after a local `destroy`: nothing is reported after it.
 */
export class SimEndpoint implements Link {
  private handlers: LinkHandlers | undefined = undefined
  private paused = false
  private inbox: Array<Segment> = []
  private flushArmed = false
  private finished = false
  private destroyed = false
  private sentEnd = false
  private sentReset = false
  private receivedEnd = false
  private receivedReset = false
  private released = false
  /** The host crashed: the endpoint neither sends nor reports anything any more. */
  dead = false
  wantDrain = false
  /** Set while a client waits for the answer to its `syn`. */
  connecting: ((outcome: "established" | "refused") => void) | undefined = undefined

  readonly world: SimWorld
  readonly host: string
  readonly local: StreamAddress
  readonly remote: StreamAddress
  readonly out: Pipe
  readonly incoming: Pipe

  constructor(
    world: SimWorld,
    host: string,
    local: StreamAddress,
    remote: StreamAddress,
    out: Pipe,
    incoming: Pipe,
  ) {
    this.world = world
    this.host = host
    this.local = local
    this.remote = remote
    this.out = out
    this.incoming = incoming
    out.sender = this
    incoming.receiver = (segment) => this.receive(segment)
  }

  // ---- Link -------------------------------------------------------------------------

  readonly start = (handlers: LinkHandlers): void => {
    if (this.handlers !== undefined) return
    this.handlers = handlers
    this.scheduleFlush()
  }

  readonly write = (chunk: Uint8Array): boolean => {
    // Bytes to a closed side are dropped, as on a socket: its close was or will be reported.
    if (this.dead || this.destroyed || this.sentEnd || this.sentReset) return true
    const out = this.out
    out.unackedBytes += chunk.byteLength
    if (out.unackedBytes > this.world.bufferedBytesMax) {
      this.overflow()
      return true
    }
    // A copy: the caller may reuse its buffer once `write` returns.
    out.send({ kind: "data", bytes: chunk.slice() }, "send")
    if (out.unackedBytes > this.world.highWaterBytes) {
      this.wantDrain = true
      return false
    }
    return true
  }

  readonly pause = (): void => {
    this.paused = true
  }

  readonly resume = (): void => {
    this.paused = false
    this.scheduleFlush()
  }

  readonly end = (): void => {
    if (this.dead || this.destroyed || this.sentEnd || this.sentReset) return
    this.sentEnd = true
    this.out.send({ kind: "end" }, "end")
    this.release()
  }

  readonly destroy = (): void => {
    if (this.destroyed) return
    this.destroyed = true
    this.finished = true
    this.connecting = undefined
    this.discardInbox()
    if (!this.dead) this.sendReset("peer aborted the connection")
    this.release()
  }

  // ---- network side -----------------------------------------------------------------

  /** A segment arrived from the peer; returns why it was dropped, if it was. */
  receive(segment: Segment): string | undefined {
    if (this.dead || this.destroyed) {
      if (segment.kind === "data") this.incoming.consumed(segment.bytes.byteLength)
      // A closed (or forgotten, after a restart) socket answers anything but a reset with one.
      if (segment.kind !== "reset" && (!this.dead || this.world.isUp(this.host))) {
        this.sendReset(this.dead ? "connection unknown after restart" : "connection closed")
      }
      return this.dead ? "receiver crashed" : "connection closed"
    }
    switch (segment.kind) {
      case "syn":
        return "unexpected syn"
      case "synack": {
        const connecting = this.connecting
        this.connecting = undefined
        connecting?.("established")
        return undefined
      }
      case "reset": {
        this.receivedReset = true
        const connecting = this.connecting
        if (connecting !== undefined) {
          this.connecting = undefined
          this.finished = true
          this.release()
          connecting("refused")
          return undefined
        }
        // A reset discards what was not read yet, as the kernel does.
        this.discardInbox()
        this.inbox.push(segment)
        this.flush()
        return undefined
      }
      case "end":
        this.receivedEnd = true
        this.inbox.push(segment)
        this.flush()
        return undefined
      case "data":
        this.inbox.push(segment)
        this.flush()
        return undefined
    }
  }

  /**
   * The host crashed. In `process` mode its kernel resets the connection (the peer sees it
   * after the latency); in `host` mode nothing leaves. Whoever still holds this side
   * outside the crashed programs sees a reset at once.
   */
  kill(mode: "process" | "host"): void {
    if (this.dead) return
    if (mode === "process" && !this.destroyed) this.sendReset("peer process crashed")
    this.dead = true
    this.connecting = undefined
    this.discardInbox()
    this.release()
    if (this.handlers !== undefined && !this.finished) {
      this.finished = true
      const handlers = this.handlers
      this.world.scheduler.at(this.world.scheduler.nowMs(), () =>
        handlers.onReset("local host crashed"),
      )
    }
  }

  reportDrain(): void {
    if (this.handlers === undefined || this.finished || this.dead) return
    this.handlers.onDrain()
  }

  // ---- internals --------------------------------------------------------------------

  private sendReset(detail: string): void {
    if (this.sentReset || this.receivedReset || (this.sentEnd && this.receivedEnd)) return
    this.sentReset = true
    this.out.send({ kind: "reset", detail }, "reset")
  }

  private overflow(): void {
    const detail = `more than ${this.world.bufferedBytesMax} bytes unread (SimNet limit)`
    this.sendReset(detail)
    this.discardInbox()
    this.inbox.push({ kind: "reset", detail })
    this.scheduleFlush()
  }

  private discardInbox(): void {
    for (const segment of this.inbox) {
      if (segment.kind === "data") this.incoming.consumed(segment.bytes.byteLength)
    }
    this.inbox = []
  }

  private scheduleFlush(): void {
    if (this.flushArmed) return
    this.flushArmed = true
    const scheduler = this.world.scheduler
    scheduler.at(scheduler.nowMs(), () => {
      this.flushArmed = false
      this.flush()
    })
  }

  /** Reports what arrived, in order, unless paused (a reset is reported even then). */
  private flush(): void {
    const handlers = this.handlers
    if (handlers === undefined) return
    // Bounded by the inbox, which the high-water mark and the buffer limit bound.
    while (this.inbox.length > 0 && !this.finished && !this.dead) {
      const segment = this.inbox[0]!
      if (segment.kind === "reset") {
        this.inbox.shift()
        this.finished = true
        handlers.onReset(segment.detail)
        return
      }
      if (this.paused) return
      this.inbox.shift()
      if (segment.kind === "end") {
        this.finished = true
        handlers.onEnd()
        return
      }
      if (segment.kind === "data") {
        this.incoming.consumed(segment.bytes.byteLength)
        handlers.onData(segment.bytes)
      }
    }
  }

  private release(): void {
    if (this.released) return
    this.released = true
    this.world.release(this)
  }
}
