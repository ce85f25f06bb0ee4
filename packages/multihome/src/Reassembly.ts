/**
 * The receiver's reassembly and ordering of user messages (RFC 9260 §6.5, §6.6, §6.9):
 * DATA chunks in, complete user messages out.
 *
 * - Ordered messages (U = 0) of a stream are delivered strictly in Stream Sequence Number
 *   order (§6.5), the SSN wrapping from 65535 to 0 (§3.3.1); a complete message waits for
 *   every message of lower SSN in its stream.
 * - Unordered messages (U = 1) are delivered as soon as complete (§6.6); their SSN is
 *   ignored.
 * - A fragmented message (§6.9) is a B fragment, any M fragments and an E fragment at
 *   consecutive TSNs; the fragments of an ordered message carry the same stream and SSN.
 *
 * The caller de-duplicates TSNs first (a {@link TsnTracker} "Duplicate" is never passed
 * in) and keeps the received bytes within its receive window (§6.2).
 *
 * Ownership: a chunk's `userData` is a view into its received packet, and offering the
 * chunk hands those bytes over: the caller must not write them afterwards (the endpoint
 * never does: each datagram is a buffer of its own, not reused). Nothing is copied on the
 * way in. An unfragmented message is delivered as that view, without a copy; a fragmented
 * one is assembled into one fresh buffer (the only copy). Either way `Message.data` is
 * the receiver's: nothing else writes it.
 *
 * @since 0.1.0
 */
import type { Data } from "./Chunk.ts"

/**
 * A complete user message (§6.9). `data` belongs to the receiver of the message (nothing
 * else writes it); an unfragmented message's is a view into the received packet.
 *
 * @since 0.1.0
 * @category models
 */
export interface Message {
  readonly stream: number
  readonly ppid: number
  readonly unordered: boolean
  readonly data: Uint8Array
}

/**
 * What {@link Reassembly.offer} did with a chunk. Every rejection leaves the state as it
 * was (the chunk is not kept):
 *
 * - `InvalidStream`: stream identifier ≥ the inbound streams negotiated. §6.5: answer with
 *   an ERROR chunk, cause Invalid Stream Identifier; the TSN is still acknowledged.
 * - `NoUserData`: empty user data. §6.2: ABORT with cause No User Data.
 * - `StaleSequence`: an ordered chunk whose SSN is before the next one expected on its
 *   stream (a message already delivered): the peer broke §6.5.
 * - `DuplicateTsn`: a chunk with this TSN is already buffered (the caller's de-duplication
 *   failed, or the peer reused a TSN).
 * - `FragmentMismatch`: the chunk contradicts buffered fragments (a second B or E for one
 *   message, a fragment outside a message's B … E, a continuation across streams, or an
 *   unfragmented chunk on an SSN already holding fragments): a protocol violation.
 *
 * @since 0.1.0
 * @category models
 */
export type Outcome =
  | { readonly _tag: "Accepted"; readonly messages: Array<Message> }
  | { readonly _tag: "InvalidStream"; readonly stream: number }
  | { readonly _tag: "NoUserData"; readonly tsn: number }
  | { readonly _tag: "StaleSequence"; readonly stream: number; readonly ssn: number }
  | { readonly _tag: "DuplicateTsn"; readonly tsn: number }
  | { readonly _tag: "FragmentMismatch"; readonly tsn: number; readonly detail: string }

/**
 * A rejected {@link Outcome}.
 *
 * @since 0.1.0
 * @category models
 */
export type Rejection = Exclude<Outcome, { readonly _tag: "Accepted" }>

/**
 * A buffered fragment, as kept and as snapshotted.
 *
 * @since 0.1.0
 * @category snapshot
 */
export interface FragmentSnapshot {
  readonly tsn: number
  readonly stream: number
  readonly ssn: number
  readonly ppid: number
  readonly unordered: boolean
  readonly beginning: boolean
  readonly ending: boolean
  readonly data: Uint8Array
}

/**
 * Plain-data image of a {@link Reassembly}. `nextSsn` lists `[stream, ssn]` pairs flat
 * (`[s0, n0, s1, n1, …]`) for streams whose next expected SSN is not 0. Fragment buffers
 * are shared with the live object (and are views into received packets): they are never
 * written after being kept.
 *
 * @since 0.1.0
 * @category snapshot
 */
export interface ReassemblySnapshot {
  readonly inboundStreams: number
  readonly nextSsn: ReadonlyArray<number>
  readonly fragments: ReadonlyArray<FragmentSnapshot>
}

type Fragment = FragmentSnapshot

const lt32 = (a: number, b: number): boolean => a !== b && (b - a) >>> 0 < 0x8000_0000
const lt16 = (a: number, b: number): boolean => a !== b && ((b - a) & 0xffff) < 0x8000
const orderedKey = (stream: number, ssn: number): number => stream * 0x10000 + ssn

const fromChunk = (chunk: Data, data: Uint8Array): Fragment => ({
  tsn: chunk.tsn >>> 0,
  stream: chunk.streamIdentifier,
  ssn: chunk.streamSequenceNumber,
  ppid: chunk.payloadProtocolIdentifier,
  unordered: chunk.unordered,
  beginning: chunk.beginning,
  ending: chunk.ending,
  data,
})

/** Concatenates consecutive fragments (B first) into one fresh buffer: the one copy made. */
const assemble = (fragments: ReadonlyArray<Fragment>): Message => {
  const first = fragments[0] as Fragment
  let length = 0
  for (const fragment of fragments) length += fragment.data.length
  const data = new Uint8Array(length)
  let offset = 0
  for (const fragment of fragments) {
    data.set(fragment.data, offset)
    offset += fragment.data.length
  }
  return { stream: first.stream, ppid: first.ppid, unordered: first.unordered, data }
}

/** Fragments of one ordered message, sorted by TSN, complete when B … E are all there. */
const isComplete = (fragments: ReadonlyArray<Fragment>): boolean => {
  const first = fragments[0]
  const last = fragments[fragments.length - 1]
  return (
    first !== undefined &&
    last !== undefined &&
    first.beginning &&
    last.ending &&
    // Sorted and free of duplicates, so the count proves the TSNs are consecutive.
    (last.tsn - first.tsn) >>> 0 === fragments.length - 1
  )
}

/**
 * Reassembly and ordering state of one association (mutable).
 *
 * @since 0.1.0
 * @category models
 */
export class Reassembly {
  /** Inbound streams accepted (the MIS/OS minimum negotiated at setup). */
  readonly inboundStreams: number
  private readonly nextSsn: Uint16Array
  /** Ordered fragments by stream and SSN, each list sorted by TSN. */
  private readonly ordered: Map<number, Array<Fragment>>
  /** Unordered fragments by TSN. */
  private readonly unordered: Map<number, Fragment>
  private buffered: number
  private lastRejected: Rejection | undefined

  private constructor(inboundStreams: number) {
    this.inboundStreams = inboundStreams
    this.nextSsn = new Uint16Array(inboundStreams)
    this.ordered = new Map()
    this.unordered = new Map()
    this.buffered = 0
    this.lastRejected = undefined
  }

  /**
   * An empty reassembly for `inboundStreams` streams (0 … 65535 of them), every stream
   * expecting SSN 0 first (§6.5).
   *
   * @since 0.1.0
   * @category constructors
   */
  static create(inboundStreams: number): Reassembly {
    if (!Number.isInteger(inboundStreams) || inboundStreams < 0 || inboundStreams > 0xffff) {
      throw new RangeError(`inboundStreams out of range: ${inboundStreams}`)
    }
    return new Reassembly(inboundStreams)
  }

  /**
   * Rebuilds from {@link Reassembly.snapshot}.
   *
   * @since 0.1.0
   * @category snapshot
   */
  static restore(snapshot: ReassemblySnapshot): Reassembly {
    const reassembly = Reassembly.create(snapshot.inboundStreams)
    for (let index = 0; index + 1 < snapshot.nextSsn.length; index += 2) {
      reassembly.nextSsn[snapshot.nextSsn[index] as number] = snapshot.nextSsn[index + 1] as number
    }
    for (const fragment of snapshot.fragments) {
      // Snapshots list fragments in TSN order per message, so appending keeps lists sorted.
      if (fragment.unordered) {
        reassembly.unordered.set(fragment.tsn, fragment)
      } else {
        const key = orderedKey(fragment.stream, fragment.ssn)
        const list = reassembly.ordered.get(key)
        if (list === undefined) reassembly.ordered.set(key, [fragment])
        else reassembly.insertSorted(list, fragment)
      }
      reassembly.buffered += fragment.data.length
    }
    return reassembly
  }

  /**
   * User bytes held in buffered fragments (what the receive window must subtract, §6.2).
   *
   * @since 0.1.0
   * @category getters
   */
  get bufferedBytes(): number {
    return this.buffered
  }

  /**
   * Buffered fragments, ordered and unordered.
   *
   * @since 0.1.0
   * @category getters
   */
  get bufferedFragments(): number {
    let count = this.unordered.size
    for (const list of this.ordered.values()) count += list.length
    return count
  }

  /**
   * The rejection of the last chunk {@link Reassembly.add} refused, if any.
   *
   * @since 0.1.0
   * @category getters
   */
  get lastRejection(): Rejection | undefined {
    return this.lastRejected
  }

  /**
   * The next SSN expected on an ordered `stream`.
   *
   * @since 0.1.0
   * @category getters
   */
  expectedSsn(stream: number): number {
    return this.nextSsn[stream] ?? 0
  }

  /**
   * Takes a NEW DATA chunk (its TSN not received before) and returns the messages it
   * completes, in delivery order, or why it was rejected (see {@link Outcome}).
   *
   * @since 0.1.0
   * @category mutations
   */
  offer(chunk: Data): Outcome {
    // §6.5: a stream the association did not open.
    if (chunk.streamIdentifier >= this.inboundStreams) {
      return { _tag: "InvalidStream", stream: chunk.streamIdentifier }
    }
    // §6.2: DATA with no user data.
    if (chunk.userData.length === 0) return { _tag: "NoUserData", tsn: chunk.tsn }
    return chunk.unordered ? this.offerUnordered(chunk) : this.offerOrdered(chunk)
  }

  /**
   * {@link Reassembly.offer} for callers that only need the messages: a rejected chunk
   * returns `[]` and is recorded in {@link Reassembly.lastRejection}. Prefer `offer`,
   * whose rejections say what to answer the peer.
   *
   * @since 0.1.0
   * @category mutations
   */
  add(chunk: Data): Array<Message> {
    const outcome = this.offer(chunk)
    if (outcome._tag === "Accepted") return outcome.messages
    this.lastRejected = outcome
    return []
  }

  private offerOrdered(chunk: Data): Outcome {
    const stream = chunk.streamIdentifier
    const ssn = chunk.streamSequenceNumber
    const expected = this.nextSsn[stream] as number
    if (lt16(ssn, expected)) return { _tag: "StaleSequence", stream, ssn }
    const key = orderedKey(stream, ssn)
    const list = this.ordered.get(key)
    if (list === undefined && ssn === expected && chunk.beginning && chunk.ending) {
      // The common case: the next message, unfragmented, delivered without buffering.
      const messages: Array<Message> = [
        {
          stream,
          ppid: chunk.payloadProtocolIdentifier,
          unordered: false,
          // No copy: the packet's bytes were handed over (see the module's ownership rule).
          data: chunk.userData,
        },
      ]
      this.nextSsn[stream] = (expected + 1) & 0xffff
      this.drain(stream, messages)
      return { _tag: "Accepted", messages }
    }
    const fragment = fromChunk(chunk, chunk.userData)
    if (list === undefined) {
      this.ordered.set(key, [fragment])
    } else {
      const mismatch = this.checkOrdered(list, fragment)
      if (mismatch !== undefined) return mismatch
      this.insertSorted(list, fragment)
    }
    this.buffered += fragment.data.length
    const messages: Array<Message> = []
    this.drain(stream, messages)
    return { _tag: "Accepted", messages }
  }

  /** Whether `fragment` fits among the other fragments of its ordered message. */
  private checkOrdered(list: ReadonlyArray<Fragment>, fragment: Fragment): Rejection | undefined {
    const first = list[0] as Fragment
    const last = list[list.length - 1] as Fragment
    const tsn = fragment.tsn
    for (const kept of list) {
      if (kept.tsn === tsn) return { _tag: "DuplicateTsn", tsn }
    }
    const mismatch = (detail: string): Rejection => ({ _tag: "FragmentMismatch", tsn, detail })
    if (fragment.beginning && fragment.ending)
      return mismatch("unfragmented chunk on an SSN holding fragments")
    if (fragment.beginning && (first.beginning || lt32(first.tsn, tsn)))
      return mismatch("B fragment after another fragment")
    if (!fragment.beginning && first.beginning && lt32(tsn, first.tsn))
      return mismatch("fragment before B")
    if (fragment.ending && (last.ending || lt32(tsn, last.tsn)))
      return mismatch("E fragment before another fragment")
    if (!fragment.ending && last.ending && lt32(last.tsn, tsn)) return mismatch("fragment after E")
    return undefined
  }

  private insertSorted(list: Array<Fragment>, fragment: Fragment): void {
    let index = list.length
    while (index > 0 && lt32(fragment.tsn, (list[index - 1] as Fragment).tsn)) index--
    list.splice(index, 0, fragment)
  }

  /** Delivers the stream's complete messages from its next expected SSN on (§6.5). */
  private drain(stream: number, messages: Array<Message>): void {
    // Bounded: each turn removes one buffered message.
    for (;;) {
      const expected = this.nextSsn[stream] as number
      const key = orderedKey(stream, expected)
      const list = this.ordered.get(key)
      if (list === undefined || !isComplete(list)) return
      this.ordered.delete(key)
      const message = assemble(list)
      this.buffered -= message.data.length
      messages.push(message)
      this.nextSsn[stream] = (expected + 1) & 0xffff
    }
  }

  private offerUnordered(chunk: Data): Outcome {
    const tsn = chunk.tsn >>> 0
    if (this.unordered.has(tsn)) return { _tag: "DuplicateTsn", tsn }
    const stream = chunk.streamIdentifier
    const before = this.unordered.get((tsn - 1) >>> 0)
    const after = this.unordered.get((tsn + 1) >>> 0)
    const mismatch = (detail: string): Outcome => ({ _tag: "FragmentMismatch", tsn, detail })
    // §6.9: the fragments of one message have consecutive TSNs; a neighbour that
    // continues into this TSN (or this chunk continuing into it) must agree.
    if (before !== undefined) {
      if (!before.ending && (chunk.beginning || before.stream !== stream))
        return mismatch("previous fragment continues into a different message")
      if (before.ending && !chunk.beginning) return mismatch("continuation after an E fragment")
    }
    if (after !== undefined) {
      if (!after.beginning && (chunk.ending || after.stream !== stream))
        return mismatch("next fragment continues from a different message")
      if (after.beginning && !chunk.ending) return mismatch("continuation into a B fragment")
    }
    if (chunk.beginning && chunk.ending) {
      return {
        _tag: "Accepted",
        messages: [
          {
            stream,
            ppid: chunk.payloadProtocolIdentifier,
            unordered: true,
            data: chunk.userData,
          },
        ],
      }
    }
    const fragment = fromChunk(chunk, chunk.userData)
    this.unordered.set(tsn, fragment)
    this.buffered += fragment.data.length
    // Walk to B and to E; each walk is bounded by the fragments buffered.
    let first = fragment
    for (let steps = this.unordered.size; !first.beginning && steps > 0; steps--) {
      const previous = this.unordered.get((first.tsn - 1) >>> 0)
      if (previous === undefined) return { _tag: "Accepted", messages: [] }
      first = previous
    }
    let last = fragment
    for (let steps = this.unordered.size; !last.ending && steps > 0; steps--) {
      const next = this.unordered.get((last.tsn + 1) >>> 0)
      if (next === undefined) return { _tag: "Accepted", messages: [] }
      last = next
    }
    if (!first.beginning || !last.ending) return { _tag: "Accepted", messages: [] }
    const fragments: Array<Fragment> = []
    const count = ((last.tsn - first.tsn) >>> 0) + 1
    for (let index = 0; index < count; index++) {
      const key = (first.tsn + index) >>> 0
      fragments.push(this.unordered.get(key) as Fragment)
      this.unordered.delete(key)
    }
    const message = assemble(fragments)
    this.buffered -= message.data.length
    return { _tag: "Accepted", messages: [message] }
  }

  /**
   * Makes `ssn` the next SSN expected on ordered `stream` when it is ahead of the one
   * expected now (wrapping, RFC 1982): the buffered fragments of the SSNs skipped are
   * dropped, not delivered (a replica resynchronising after a takeover: the dead primary
   * delivered those messages already). Returns the messages that become deliverable from
   * `ssn` on, in order. An `ssn` not ahead changes nothing.
   *
   * @since 0.1.0
   * @category mutations
   */
  resync(stream: number, ssn: number): Array<Message> {
    const messages: Array<Message> = []
    if (stream >= this.inboundStreams) return messages
    if (!lt16(this.nextSsn[stream] as number, ssn & 0xffff)) return messages
    this.skipStream(stream, ssn & 0xffff, false, messages)
    this.drain(stream, messages)
    return messages
  }

  /**
   * Abandons what can no longer arrive (RFC 3758 §3.6, FORWARD TSN): every buffered
   * message that lacks a fragment whose TSN is at or below `cumulative` is dropped (the
   * sender will not send that fragment again), an ordered one also moving its stream's
   * next SSN past it; then for each `[stream, ssn]` pair of `skips` (flat:
   * `[s0, n0, s1, n1, …]`) the stream's next SSN moves past `ssn`, complete messages
   * below it being delivered and incomplete ones dropped. Returns the messages delivered,
   * in order per stream, and the user bytes dropped.
   *
   * @since 0.1.0
   * @category mutations
   */
  abandon(
    cumulative: number,
    skips: ReadonlyArray<number> = [],
  ): { readonly messages: Array<Message>; readonly droppedBytes: number } {
    const before = this.buffered
    const messages: Array<Message> = []
    const cum = cumulative >>> 0
    const lte = (a: number, b: number): boolean => a === b || lt32(a, b)
    // Unordered: walk each buffered fragment's message to its ends.
    for (const fragment of [...this.unordered.values()]) {
      if (!this.unordered.has(fragment.tsn)) continue
      let first = fragment
      for (let steps = this.unordered.size; !first.beginning && steps > 0; steps--) {
        const previous = this.unordered.get((first.tsn - 1) >>> 0)
        if (previous === undefined) break
        first = previous
      }
      let last = fragment
      for (let steps = this.unordered.size; !last.ending && steps > 0; steps--) {
        const next = this.unordered.get((last.tsn + 1) >>> 0)
        if (next === undefined) break
        last = next
      }
      const hopeless =
        (!first.beginning && lte((first.tsn - 1) >>> 0, cum)) ||
        (!last.ending && lte((last.tsn + 1) >>> 0, cum))
      if (!hopeless) continue
      const count = ((last.tsn - first.tsn) >>> 0) + 1
      for (let index = 0; index < count; index++) {
        const key = (first.tsn + index) >>> 0
        const dropped = this.unordered.get(key)
        if (dropped === undefined) continue
        this.buffered -= dropped.data.length
        this.unordered.delete(key)
      }
    }
    // Ordered: a message with a hole at or below `cumulative` is lost; its stream moves on.
    const floors = new Map<number, number>()
    for (const [key, list] of [...this.ordered]) {
      const first = list[0] as Fragment
      const last = list[list.length - 1] as Fragment
      let hopeless =
        (!first.beginning && lte((first.tsn - 1) >>> 0, cum)) ||
        (!last.ending && lte((last.tsn + 1) >>> 0, cum))
      for (let index = 1; !hopeless && index < list.length; index++) {
        const previous = list[index - 1] as Fragment
        const current = list[index] as Fragment
        if (current.tsn !== (previous.tsn + 1) >>> 0 && lte((previous.tsn + 1) >>> 0, cum)) {
          hopeless = true
        }
      }
      if (!hopeless) continue
      this.ordered.delete(key)
      for (const fragment of list) this.buffered -= fragment.data.length
      const floor = (first.ssn + 1) & 0xffff
      const known = floors.get(first.stream)
      if (
        !lt16(floor, this.nextSsn[first.stream] as number) &&
        (known === undefined || lt16(known, floor))
      ) {
        floors.set(first.stream, floor)
      }
    }
    for (let index = 0; index + 1 < skips.length; index += 2) {
      const stream = skips[index] as number
      if (stream >= this.inboundStreams) continue
      const floor = ((skips[index + 1] as number) + 1) & 0xffff
      const known = floors.get(stream)
      if (known === undefined || lt16(known, floor)) floors.set(stream, floor)
    }
    for (const [stream, floor] of floors) {
      if (lt16(this.nextSsn[stream] as number, floor))
        this.skipStream(stream, floor, true, messages)
      this.drain(stream, messages)
    }
    let deliveredBytes = 0
    for (const message of messages) deliveredBytes += message.data.length
    return { messages, droppedBytes: before - this.buffered - deliveredBytes }
  }

  /**
   * Moves `stream`'s next SSN to `floor` (ahead of it): buffered messages below `floor`
   * are delivered in SSN order when complete and `deliver`, dropped otherwise.
   */
  private skipStream(stream: number, floor: number, deliver: boolean, messages: Array<Message>) {
    const expected = this.nextSsn[stream] as number
    const below: Array<[number, Array<Fragment>]> = []
    for (const [key, list] of this.ordered) {
      const first = list[0] as Fragment
      if (first.stream !== stream) continue
      if (lt16(first.ssn, floor)) below.push([key, list])
    }
    // SSN order from the one expected (wrapping).
    below.sort(
      (a, b) => ((a[1][0]!.ssn - expected) & 0xffff) - ((b[1][0]!.ssn - expected) & 0xffff),
    )
    for (const [key, list] of below) {
      this.ordered.delete(key)
      if (deliver && isComplete(list)) {
        const message = assemble(list)
        this.buffered -= message.data.length
        messages.push(message)
      } else {
        for (const fragment of list) this.buffered -= fragment.data.length
      }
    }
    this.nextSsn[stream] = floor
  }

  /**
   * Plain data for replication: the streams' next SSNs and the buffered fragments.
   *
   * @since 0.1.0
   * @category snapshot
   */
  snapshot(): ReassemblySnapshot {
    const nextSsn: Array<number> = []
    for (let stream = 0; stream < this.inboundStreams; stream++) {
      const ssn = this.nextSsn[stream] as number
      if (ssn !== 0) nextSsn.push(stream, ssn)
    }
    const fragments: Array<FragmentSnapshot> = []
    for (const list of this.ordered.values()) fragments.push(...list)
    for (const fragment of this.unordered.values()) fragments.push(fragment)
    return { inboundStreams: this.inboundStreams, nextSsn, fragments }
  }
}
