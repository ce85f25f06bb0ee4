import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import type { Chunk } from "../src/index.ts"
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
  it("delivers an unfragmented ordered message at once, as an owned copy", () => {
    const reassembly = Reassembly.create(2)
    const chunk = data(1, { bytes: [1, 2, 3], payloadProtocolIdentifier: 7 })
    const messages = accepted(reassembly, chunk)
    expect(messages).toEqual([
      { stream: 0, ppid: 7, unordered: false, data: new Uint8Array([1, 2, 3]) },
    ])
    chunk.userData[0] = 99
    expect(messages[0]?.data[0]).toBe(1)
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

  it("copies the bytes it keeps: reusing the packet buffer does not change what is delivered", () => {
    const reassembly = Reassembly.create(1)
    const buffer = new Uint8Array([1, 2, 3, 4])
    const first: Chunk.Data = { ...data(1, { ending: false }), userData: buffer.subarray(0, 2) }
    accepted(reassembly, first)
    buffer.fill(0)
    const messages = accepted(reassembly, {
      ...data(2, { beginning: false }),
      userData: new Uint8Array([5]),
    })
    expect([...(messages[0]?.data ?? [])]).toEqual([1, 2, 5])
  })
})
