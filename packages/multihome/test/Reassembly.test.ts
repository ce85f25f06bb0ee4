import { describe, expect, it } from "@effect/vitest"
import { Prng } from "@understudy/testkit"
import * as fc from "fast-check"
import type * as Chunk from "../src/Chunk.ts"
import { type Message, Reassembly } from "../src/Reassembly.ts"

const data = (
  tsn: number,
  fields: Partial<Omit<Chunk.Data, "_tag" | "tsn" | "userData">> & {
    readonly bytes?: ReadonlyArray<number>
  } = {},
): Chunk.Data => ({
  _tag: "Data",
  immediate: false,
  unordered: fields.unordered ?? false,
  beginning: fields.beginning ?? true,
  ending: fields.ending ?? true,
  tsn,
  streamIdentifier: fields.streamIdentifier ?? 0,
  streamSequenceNumber: fields.streamSequenceNumber ?? 0,
  payloadProtocolIdentifier: fields.payloadProtocolIdentifier ?? 51,
  userData: new Uint8Array(fields.bytes ?? [tsn & 0xff]),
})

const accepted = (reassembly: Reassembly, chunk: Chunk.Data): Array<Message> => {
  const outcome = reassembly.offer(chunk)
  if (outcome._tag !== "Accepted") throw new Error(`rejected: ${JSON.stringify(outcome)}`)
  return outcome.messages
}

describe("Reassembly (RFC 9260 §6.5, §6.6, §6.9)", () => {
  it("delivers an unfragmented ordered message at once, as the chunk's bytes (no copy)", () => {
    const reassembly = Reassembly.create(2)
    const chunk = data(1, { bytes: [1, 2, 3], payloadProtocolIdentifier: 7 })
    const messages = accepted(reassembly, chunk)
    expect(messages).toEqual([
      { stream: 0, ppid: 7, unordered: false, data: new Uint8Array([1, 2, 3]) },
    ])
    // The packet's bytes were handed over: the message is a view of them.
    expect(messages[0]?.data).toBe(chunk.userData)
    expect(reassembly.bufferedBytes).toBe(0)
    expect(reassembly.expectedSsn(0)).toBe(1)
  })

  it("holds ordered messages until every lower SSN of the stream is delivered (§6.5)", () => {
    const reassembly = Reassembly.create(2)
    expect(accepted(reassembly, data(3, { streamSequenceNumber: 2, bytes: [3, 3] }))).toEqual([])
    expect(accepted(reassembly, data(2, { streamSequenceNumber: 1, bytes: [2] }))).toEqual([])
    // Another stream is independent.
    expect(
      accepted(reassembly, data(4, { streamIdentifier: 1, bytes: [4] })).map((m) => m.stream),
    ).toEqual([1])
    expect(reassembly.bufferedBytes).toBe(3)
    const messages = accepted(reassembly, data(1, { streamSequenceNumber: 0, bytes: [1] }))
    expect(messages.map((m) => [...m.data])).toEqual([[1], [2], [3, 3]])
    expect(reassembly.bufferedBytes).toBe(0)
  })

  it("delivers unordered messages as soon as complete, past a blocked stream (§6.6)", () => {
    const reassembly = Reassembly.create(1)
    expect(accepted(reassembly, data(2, { streamSequenceNumber: 1 }))).toEqual([])
    const messages = accepted(
      reassembly,
      data(3, { unordered: true, streamSequenceNumber: 1234, bytes: [9] }),
    )
    expect(messages).toEqual([{ stream: 0, ppid: 51, unordered: true, data: new Uint8Array([9]) }])
  })

  it("reassembles B/M/E fragments with consecutive TSNs in any arrival order (§6.9)", () => {
    const reassembly = Reassembly.create(1)
    expect(
      accepted(reassembly, data(12, { beginning: false, ending: true, bytes: [5, 6] })),
    ).toEqual([])
    expect(
      accepted(reassembly, data(10, { beginning: true, ending: false, bytes: [1, 2] })),
    ).toEqual([])
    expect(reassembly.bufferedBytes).toBe(4)
    const messages = accepted(
      reassembly,
      data(11, { beginning: false, ending: false, bytes: [3, 4] }),
    )
    expect(messages.map((m) => [...m.data])).toEqual([[1, 2, 3, 4, 5, 6]])
    expect(reassembly.bufferedBytes).toBe(0)
  })

  it("reassembles unordered fragments by TSN across the 2^32 wrap", () => {
    const reassembly = Reassembly.create(1)
    const u = { unordered: true }
    expect(
      accepted(reassembly, data(0, { ...u, beginning: false, ending: true, bytes: [3] })),
    ).toEqual([])
    expect(
      accepted(reassembly, data(0xffff_fffe, { ...u, beginning: true, ending: false, bytes: [1] })),
    ).toEqual([])
    const messages = accepted(
      reassembly,
      data(0xffff_ffff, { ...u, beginning: false, ending: false, bytes: [2] }),
    )
    expect(messages.map((m) => [...m.data])).toEqual([[1, 2, 3]])
  })

  it("wraps the SSN from 65535 to 0", () => {
    const reassembly = Reassembly.restore({
      inboundStreams: 1,
      nextSsn: [0, 0xffff],
      fragments: [],
    })
    expect(accepted(reassembly, data(2, { streamSequenceNumber: 0, bytes: [2] }))).toEqual([])
    expect(
      accepted(reassembly, data(1, { streamSequenceNumber: 0xffff, bytes: [1] })).map(
        (m) => m.data[0],
      ),
    ).toEqual([1, 2])
    expect(reassembly.expectedSsn(0)).toBe(1)
  })

  it("rejects a stream id ≥ the inbound streams, keeping nothing (§6.5)", () => {
    const reassembly = Reassembly.create(2)
    expect(reassembly.offer(data(1, { streamIdentifier: 2 }))).toEqual({
      _tag: "InvalidStream",
      stream: 2,
    })
    expect(reassembly.bufferedBytes).toBe(0)
  })

  it("rejects DATA without user data (§6.2)", () => {
    const reassembly = Reassembly.create(1)
    expect(reassembly.offer(data(8, { bytes: [] }))).toEqual({ _tag: "NoUserData", tsn: 8 })
  })

  it("rejects an ordered SSN already delivered", () => {
    const reassembly = Reassembly.create(1)
    accepted(reassembly, data(1, { streamSequenceNumber: 0 }))
    expect(reassembly.offer(data(2, { streamSequenceNumber: 0 }))).toEqual({
      _tag: "StaleSequence",
      stream: 0,
      ssn: 0,
    })
  })

  it("rejects a TSN already buffered", () => {
    const reassembly = Reassembly.create(1)
    accepted(reassembly, data(5, { streamSequenceNumber: 1, ending: false }))
    expect(reassembly.offer(data(5, { streamSequenceNumber: 1, beginning: false }))).toEqual({
      _tag: "DuplicateTsn",
      tsn: 5,
    })
    accepted(reassembly, data(9, { unordered: true, ending: false }))
    expect(reassembly.offer(data(9, { unordered: true, ending: false }))).toEqual({
      _tag: "DuplicateTsn",
      tsn: 9,
    })
    expect(reassembly.bufferedBytes).toBe(2)
  })

  it("rejects fragments that contradict the buffered ones, leaving the state unchanged", () => {
    const reassembly = Reassembly.create(2)
    accepted(reassembly, data(10, { streamSequenceNumber: 1, beginning: true, ending: false }))
    accepted(reassembly, data(13, { streamSequenceNumber: 1, beginning: false, ending: true }))
    const before = reassembly.snapshot()
    const mismatch = (chunk: Chunk.Data) =>
      expect(reassembly.offer(chunk)._tag).toBe("FragmentMismatch")
    mismatch(data(11, { streamSequenceNumber: 1, beginning: true, ending: false })) // second B
    mismatch(data(12, { streamSequenceNumber: 1, beginning: false, ending: true })) // second E
    mismatch(data(9, { streamSequenceNumber: 1, beginning: false, ending: false })) // before B
    mismatch(data(14, { streamSequenceNumber: 1, beginning: false, ending: false })) // after E
    mismatch(data(11, { streamSequenceNumber: 1 })) // unfragmented on a fragmented SSN
    // Unordered: a continuation must join the same stream, and not follow an E.
    accepted(reassembly, data(20, { unordered: true, beginning: true, ending: false }))
    mismatch(data(21, { unordered: true, streamIdentifier: 1, beginning: false, ending: true }))
    mismatch(data(21, { unordered: true, beginning: true, ending: true }))
    accepted(reassembly, data(30, { unordered: true, beginning: false, ending: true }))
    mismatch(data(31, { unordered: true, beginning: false, ending: true }))
    mismatch(data(29, { unordered: true, beginning: false, ending: true }))
    const after = reassembly.snapshot()
    expect(after.fragments.length).toBe(before.fragments.length + 2)
    expect(reassembly.bufferedBytes).toBe(4)
  })

  it("add() returns the messages, and [] with lastRejection for a refused chunk", () => {
    const reassembly = Reassembly.create(1)
    expect(reassembly.add(data(1)).length).toBe(1)
    expect(reassembly.lastRejection).toBeUndefined()
    expect(reassembly.add(data(2, { streamIdentifier: 5 }))).toEqual([])
    expect(reassembly.lastRejection).toEqual({ _tag: "InvalidStream", stream: 5 })
  })

  interface Sent {
    readonly stream: number
    readonly unordered: boolean
    readonly ppid: number
    readonly data: Uint8Array
    /** Fragment sizes, summing to data.length. */
    readonly cuts: ReadonlyArray<number>
  }

  const sentMessage: fc.Arbitrary<Sent> = fc
    .record({
      stream: fc.integer({ min: 0, max: 3 }),
      unordered: fc.boolean(),
      ppid: fc.integer({ min: 0, max: 0xffff_ffff }),
      data: fc.uint8Array({ minLength: 1, maxLength: 40, size: "max" }),
      pieces: fc.array(fc.integer({ min: 1, max: 12 }), {
        minLength: 1,
        maxLength: 6,
        size: "max",
      }),
    })
    .map(({ pieces, ...message }) => {
      const cuts: Array<number> = []
      let left = message.data.length
      for (const piece of pieces) {
        if (left === 0) break
        const size = Math.min(piece, left)
        cuts.push(size)
        left -= size
      }
      if (left > 0) cuts.push(left)
      return { ...message, cuts }
    })

  /** Sender side: fragments with consecutive TSNs per message, SSNs per stream (§6.5, §6.9). */
  const fragment = (
    messages: ReadonlyArray<Sent>,
    initialTsn: number,
    initialSsn: number,
  ): Array<Chunk.Data> => {
    const ssn = [initialSsn, initialSsn, initialSsn, initialSsn]
    const chunks: Array<Chunk.Data> = []
    let tsn = initialTsn
    for (const message of messages) {
      const streamSequenceNumber = message.unordered ? 0 : (ssn[message.stream] as number)
      if (!message.unordered) ssn[message.stream] = (streamSequenceNumber + 1) & 0xffff
      let offset = 0
      message.cuts.forEach((size, index) => {
        chunks.push({
          _tag: "Data",
          immediate: false,
          unordered: message.unordered,
          beginning: index === 0,
          ending: index === message.cuts.length - 1,
          tsn,
          streamIdentifier: message.stream,
          streamSequenceNumber,
          payloadProtocolIdentifier: message.ppid,
          userData: message.data.subarray(offset, offset + size),
        })
        tsn = (tsn + 1) >>> 0
        offset += size
      })
    }
    return chunks
  }

  const key = (m: { stream: number; unordered: boolean; ppid: number; data: Uint8Array }) =>
    `${m.stream}/${m.unordered}/${m.ppid}/${[...m.data].join(",")}`

  it("reproduces random messages from random fragmentations and arrival orders, in per-stream order (property)", () => {
    fc.assert(
      fc.property(
        fc.array(sentMessage, { maxLength: 30, size: "max" }),
        fc.integer({ min: 0xffff_ffe0, max: 0xffff_ffff }),
        fc.constantFrom(0, 0xfffe),
        fc.infiniteStream(fc.nat()),
        fc.nat(),
        (messages, initialTsn, initialSsn, randoms, snapshotAt) => {
          const chunks = fragment(messages, initialTsn, initialSsn)
          // Shuffle the arrival order (Fisher–Yates driven by the generated stream).
          const arrivals = [...chunks]
          const iterator = randoms[Symbol.iterator]()
          for (let index = arrivals.length - 1; index > 0; index--) {
            const other = (iterator.next().value as number) % (index + 1)
            ;[arrivals[index], arrivals[other]] = [
              arrivals[other] as Chunk.Data,
              arrivals[index] as Chunk.Data,
            ]
          }
          const nextSsn =
            initialSsn === 0 ? [] : [0, initialSsn, 1, initialSsn, 2, initialSsn, 3, initialSsn]
          let reassembly = Reassembly.restore({ inboundStreams: 4, nextSsn, fragments: [] })
          const delivered: Array<Message> = []
          let held = 0
          arrivals.forEach((chunk, index) => {
            if (index === snapshotAt % (arrivals.length + 1)) {
              const snapshot = reassembly.snapshot()
              reassembly = Reassembly.restore(snapshot)
              expect(reassembly.snapshot()).toEqual(snapshot)
            }
            const out = accepted(reassembly, chunk)
            held += chunk.userData.length
            for (const message of out) held -= message.data.length
            expect(reassembly.bufferedBytes).toBe(held)
            delivered.push(...out)
          })
          expect(reassembly.bufferedBytes).toBe(0)
          expect(reassembly.bufferedFragments).toBe(0)
          // Ordered: per stream, exactly the sent sequence.
          for (let stream = 0; stream < 4; stream++) {
            const sent = messages.filter((m) => !m.unordered && m.stream === stream).map(key)
            const got = delivered.filter((m) => !m.unordered && m.stream === stream).map(key)
            expect(got).toEqual(sent)
          }
          // Unordered: the same multiset.
          const sentUnordered = messages
            .filter((m) => m.unordered)
            .map(key)
            .sort()
          const gotUnordered = delivered
            .filter((m) => m.unordered)
            .map(key)
            .sort()
          expect(gotUnordered).toEqual(sentUnordered)
        },
      ),
      { numRuns: 300 },
    )
  })

  it("keeps fragments as views and assembles them into one fresh buffer", () => {
    const reassembly = Reassembly.create(1)
    // One packet carrying two fragments of an ordered message, and an unordered message.
    const packet = new Uint8Array([1, 2, 3, 4, 5, 6])
    const first: Chunk.Data = { ...data(1, { ending: false }), userData: packet.subarray(0, 2) }
    const unordered: Chunk.Data = {
      ...data(7, { unordered: true }),
      userData: packet.subarray(4, 6),
    }
    expect(accepted(reassembly, first)).toEqual([])
    const [whole] = accepted(reassembly, unordered)
    expect(whole?.data).toBe(unordered.userData)
    const snapshot = reassembly.snapshot()
    expect(snapshot.fragments[0]?.data.buffer).toBe(packet.buffer)
    const [message] = accepted(reassembly, {
      ...data(2, { beginning: false }),
      userData: packet.subarray(2, 3),
    })
    expect([...(message?.data ?? [])]).toEqual([1, 2, 3])
    expect(message?.data.buffer).not.toBe(packet.buffer)
    expect(message?.data.byteLength).toBe(message?.data.buffer.byteLength)
    // The assembled message is the receiver's: writing it leaves the packet as it was.
    message?.data.fill(0)
    expect([...packet]).toEqual([1, 2, 3, 4, 5, 6])
  })
})

describe("Reassembly.resync and Reassembly.abandon", () => {
  it("resync moves a stream's next SSN ahead, dropping what it skips, and delivers from there", () => {
    const reassembly = Reassembly.create(2)
    expect(accepted(reassembly, data(10, { streamSequenceNumber: 1, ending: false }))).toEqual([])
    expect(accepted(reassembly, data(20, { streamSequenceNumber: 6, bytes: [6] }))).toEqual([])
    expect(reassembly.resync(0, 5).map((m) => m.data)).toEqual([])
    expect(reassembly.expectedSsn(0)).toBe(5)
    expect(reassembly.bufferedBytes).toBe(1)
    expect(
      accepted(reassembly, data(19, { streamSequenceNumber: 5, bytes: [5] })).map((m) => [
        ...m.data,
      ]),
    ).toEqual([[5], [6]])
    // Not ahead: nothing changes.
    expect(reassembly.resync(0, 3)).toEqual([])
    expect(reassembly.expectedSsn(0)).toBe(7)
    expect(reassembly.bufferedBytes).toBe(0)
  })

  it("abandon drops messages missing a fragment at or below the cumulative TSN and moves their stream on", () => {
    const reassembly = Reassembly.create(2)
    // Ordered SSN 0: B at 10, E at 12; 11 will never come once the cumulative TSN is 11.
    accepted(reassembly, data(10, { ending: false, bytes: [1] }))
    accepted(reassembly, data(12, { beginning: false, bytes: [3] }))
    // Ordered SSN 1, complete, waiting for SSN 0.
    accepted(reassembly, data(13, { streamSequenceNumber: 1, bytes: [9] }))
    // Unordered: a middle fragment whose B (at 20) is at or below the point, and a B whose
    // continuation (31) is above it: kept.
    accepted(reassembly, data(21, { unordered: true, beginning: false, ending: false, bytes: [4] }))
    accepted(
      reassembly,
      data(30, { unordered: true, streamIdentifier: 1, ending: false, bytes: [5] }),
    )
    const { messages, droppedBytes } = reassembly.abandon(29)
    expect(droppedBytes).toBe(3)
    expect(messages.map((m) => [...m.data])).toEqual([[9]])
    expect(reassembly.expectedSsn(0)).toBe(2)
    expect(reassembly.bufferedBytes).toBe(1)
    expect(
      accepted(
        reassembly,
        data(31, { unordered: true, streamIdentifier: 1, beginning: false, bytes: [6] }),
      ).map((m) => [...m.data]),
    ).toEqual([[5, 6]])
  })

  it("abandon skips listed SSNs (RFC 3758 §3.6), delivering complete messages below them", () => {
    const reassembly = Reassembly.create(3)
    accepted(reassembly, data(5, { streamIdentifier: 2, streamSequenceNumber: 1, bytes: [1] }))
    accepted(reassembly, data(6, { streamIdentifier: 2, streamSequenceNumber: 3, bytes: [3] }))
    accepted(reassembly, data(7, { streamIdentifier: 2, streamSequenceNumber: 4, bytes: [4] }))
    const { messages } = reassembly.abandon(4, [2, 2])
    expect(messages.map((m) => [...m.data])).toEqual([[1], [3], [4]])
    expect(reassembly.expectedSsn(2)).toBe(5)
    expect(reassembly.bufferedBytes).toBe(0)
  })
})

describe("Reassembly.abandon as a FORWARD TSN receiver (property)", () => {
  interface Sent {
    readonly index: number
    readonly stream: number
    readonly unordered: boolean
    readonly ssn: number
    readonly chunks: ReadonlyArray<Chunk.Data>
  }

  const scenario = fc.record({
    messages: fc.array(
      fc.record({
        stream: fc.integer({ min: 0, max: 2 }),
        unordered: fc.boolean(),
        fragments: fc.integer({ min: 1, max: 3 }),
        abandoned: fc.boolean(),
        kept: fc.integer({ min: 0, max: 2 }),
      }),
      { minLength: 1, maxLength: 16 },
    ),
    cut: fc.integer({ min: -1, max: 15 }),
    early: fc.double({ min: 0, max: 1, noNaN: true }),
    seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
    firstTsn: fc.integer({ min: 0, max: 0xffff_ffff }),
  })

  it("delivers every message not abandoned, each stream in order, and keeps nothing", () => {
    fc.assert(
      fc.property(scenario, ({ messages, cut, early, seed, firstTsn }) => {
        const rng = Prng.make(seed)
        const ssns = [0, 0, 0]
        let tsn = firstTsn
        const sent: Array<Sent> = messages.map((m, index) => {
          const ssn = m.unordered ? 0 : (ssns[m.stream] as number)
          if (!m.unordered) ssns[m.stream] = ssn + 1
          const chunks = Array.from({ length: m.fragments }, (_, f) =>
            data((tsn + f) >>> 0, {
              streamIdentifier: m.stream,
              streamSequenceNumber: ssn,
              unordered: m.unordered,
              beginning: f === 0,
              ending: f === m.fragments - 1,
              bytes: [index, f],
            }),
          )
          tsn = (tsn + m.fragments) >>> 0
          return { index, stream: m.stream, unordered: m.unordered, ssn, chunks }
        })
        const lastBefore = Math.min(cut, sent.length - 1)
        const abandoned = new Set<number>()
        const before: Array<Chunk.Data> = []
        const after: Array<Chunk.Data> = []
        for (const message of sent) {
          const spec = messages[message.index]!
          if (message.index <= lastBefore) {
            if (spec.abandoned) {
              abandoned.add(message.index)
              // A strict subset of its fragments arrived.
              const count = Math.min(spec.kept, message.chunks.length - 1)
              before.push(...rng.shuffle(message.chunks).slice(0, count))
            } else {
              before.push(...message.chunks)
            }
          } else {
            for (const chunk of message.chunks) (rng.next() < early ? before : after).push(chunk)
          }
        }
        const cumulative =
          lastBefore < 0
            ? (firstTsn - 1) >>> 0
            : (sent[lastBefore]!.chunks[sent[lastBefore]!.chunks.length - 1]!.tsn as number)
        const skips: Array<number> = []
        for (const stream of [0, 1, 2]) {
          const skipped = sent.filter(
            (m) => abandoned.has(m.index) && !m.unordered && m.stream === stream,
          )
          if (skipped.length > 0) skips.push(stream, skipped[skipped.length - 1]!.ssn)
        }
        const reassembly = Reassembly.create(3)
        const delivered: Array<Message> = []
        for (const chunk of rng.shuffle(before)) delivered.push(...accepted(reassembly, chunk))
        delivered.push(...reassembly.abandon(cumulative, skips).messages)
        for (const chunk of rng.shuffle(after)) delivered.push(...accepted(reassembly, chunk))
        const indexes = delivered.map((m) => m.data[0] as number)
        const expected = sent.filter((m) => !abandoned.has(m.index)).map((m) => m.index)
        expect([...indexes].sort((a, b) => a - b)).toEqual(expected)
        for (const stream of [0, 1, 2]) {
          const ordered = indexes.filter((i) => !sent[i]!.unordered && sent[i]!.stream === stream)
          expect(ordered).toEqual([...ordered].sort((a, b) => a - b))
        }
        expect(reassembly.bufferedBytes).toBe(0)
      }),
      { numRuns: 300 },
    )
  })
})
