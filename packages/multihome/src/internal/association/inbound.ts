/**
 * The association machine: DATA receive (§6.2, §6.5).
 */
import * as Chunk from "../../Chunk.ts"
import * as Packet from "../../Packet.ts"
import { add32, diff32, gt32, lt32 } from "../../Serial.ts"
import { pathAddress, queueChunk } from "./bundling.ts"
import { addressOf, type Ctx, dataPath, emit, setTimer } from "./context.ts"
import type { PeerAddress } from "./models.ts"
import { close, sendAbort } from "./shutdown.ts"
import type { InboundResync, State } from "./state.ts"

const receivesData = (st: State): boolean =>
  st.name === "Established" || st.name === "ShutdownPending" || st.name === "ShutdownSent"

export const onData = (
  ctx: Ctx,
  st: State,
  chunk: Chunk.Data,
  from: PeerAddress,
  index: number,
): boolean => {
  if (!receivesData(st) || st.tracker === undefined || st.reassembly === undefined) {
    emit(ctx, { _tag: "Dropped", reason: "DataNotExpected" })
    return true
  }
  if (chunk.userData.length === 0) {
    // §6.2: a DATA chunk with no user data aborts the association.
    sendAbort(ctx, st, pathAddress(st, index, from), st.peerTag, [
      { _tag: "NoUserData", tsn: chunk.tsn },
    ])
    emit(ctx, { _tag: "CommLost", reason: "NoUserData" })
    close(ctx, st, "Closed")
    return false
  }
  ctx.gotData = true
  if (chunk.immediate) st.sackNow = true
  const tracker = st.tracker
  const tsn = chunk.tsn
  // §6.2: beyond the window we can buffer, drop (not acknowledged, so the peer resends).
  const ahead = diff32(tsn, tracker.cumulative)
  if (
    ahead > 1 &&
    (ahead > 65535 || inboundBufferedBytes(st) + chunk.userData.length > st.config.receiveWindow)
  ) {
    st.sackNow = true
    emit(ctx, { _tag: "Dropped", reason: "DataBeyondWindow" })
    return true
  }
  if (tracker.receive(tsn) === "Duplicate") {
    st.sackNow = true
    return true
  }
  if (chunk.streamIdentifier >= st.inboundStreams) {
    // §6.5: acknowledged as received, discarded, reported.
    queueChunk(ctx, st, pathAddress(st, index, from), {
      _tag: "OperationError",
      causes: [{ _tag: "InvalidStreamIdentifier", streamIdentifier: chunk.streamIdentifier }],
    })
    st.sackNow = true
    return true
  }
  const resync = st.inboundResync
  if (resync !== undefined && !chunk.unordered) resyncCandidate(resync, chunk)
  return offerData(ctx, st, chunk, from, index)
}

/** Offers a new DATA chunk to reassembly and emits what it completes (or the rejection). */
const offerData = (
  ctx: Ctx,
  st: State,
  chunk: Chunk.Data,
  from: PeerAddress,
  index: number,
): boolean => {
  const tracker = st.tracker!
  if (st.reassembly === undefined) return true
  const outcome = st.reassembly.offer(chunk)
  if (st.inboundResync !== undefined && outcome._tag === "Accepted") {
    // A fragment whose siblings the dead primary acknowledged can never complete.
    const { messages, droppedBytes } = st.reassembly.abandon(tracker.cumulative)
    outcome.messages.push(...messages)
    if (droppedBytes > 0) emit(ctx, { _tag: "Dropped", reason: "ResyncIncomplete" })
    resyncStreams(ctx, st)
  }
  switch (outcome._tag) {
    case "Accepted":
      break
    case "FragmentMismatch":
      // §6.9: the fragments of a message MUST carry consecutive TSNs and one stream (and
      // SSN when ordered); a peer contradicting its own fragments cannot be reassembled.
      sendAbort(ctx, st, pathAddress(st, index, from), st.peerTag, [
        {
          _tag: "ProtocolViolation",
          information: new TextEncoder().encode(`TSN ${outcome.tsn}: ${outcome.detail}`),
        },
      ])
      emit(ctx, { _tag: "CommLost", reason: "ProtocolViolation" })
      close(ctx, st, "Closed")
      return false
    case "StaleSequence":
      // An ordered message whose SSN was delivered already: §6.5 leaves it to the receiver;
      // the TSN stays acknowledged (the peer must not resend it), the chunk is dropped.
      emit(ctx, { _tag: "Dropped", reason: "StaleSequence" })
      return true
    case "DuplicateTsn":
      // The tracker de-duplicates, so only a TSN already buffered under a stream can land
      // here (e.g. after a FORWARD TSN): nothing to add.
      emit(ctx, { _tag: "Dropped", reason: "DuplicateTsn" })
      return true
    case "InvalidStream":
    case "NoUserData":
      // Both are checked above, before the TSN is recorded.
      emit(ctx, { _tag: "Dropped", reason: outcome._tag })
      return true
  }
  for (const message of outcome.messages) {
    emit(ctx, {
      _tag: "Message",
      stream: message.stream,
      ppid: message.ppid,
      unordered: message.unordered,
      data: message.data,
    })
  }
  return true
}

/** User bytes held for delivery (what the window we offer subtracts, §6.2). */
const inboundBufferedBytes = (st: State): number => st.reassembly?.bufferedBytes ?? 0

/** Records `chunk` as its stream's candidate when it is the lowest TSN seen on it. */
const resyncCandidate = (resync: InboundResync, chunk: Chunk.Data): void => {
  const stream = chunk.streamIdentifier
  if (resync.seenStreams.includes(stream)) return
  const list = resync.candidates
  for (let index = 0; index < list.length; index += 3) {
    if (list[index] !== stream) continue
    if (lt32(chunk.tsn, list[index + 1]!)) {
      list[index + 1] = chunk.tsn
      list[index + 2] = chunk.streamSequenceNumber
    }
    return
  }
  list.push(stream, chunk.tsn, chunk.streamSequenceNumber)
}

/**
 * Inbound resynchronisation, ordered streams: once every TSN below a stream's lowest-TSN
 * candidate arrived (so no earlier message of the stream can still come: a sender numbers
 * a stream's messages in TSN order), the candidate's SSN becomes the next one expected if
 * it is ahead (the dead primary delivered the ones before it); buffered fragments of the
 * SSNs skipped are dropped. The mode ends when every inbound stream is resolved or the
 * cumulative TSN passes `untilTsn` (SSNs wrap).
 */
const resyncStreams = (ctx: Ctx, st: State): void => {
  const resync = st.inboundResync!
  const tracker = st.tracker!
  const reassembly = st.reassembly!
  const list = resync.candidates
  for (let index = 0; index < list.length; ) {
    const stream = list[index]!
    const tsn = list[index + 1]!
    const ssn = list[index + 2]!
    if (gt32(tsn, add32(tracker.cumulative, 1))) {
      index += 3
      continue
    }
    list.splice(index, 3)
    resync.seenStreams.push(stream)
    const before = reassembly.bufferedBytes
    const expected = reassembly.expectedSsn(stream)
    const messages = reassembly.resync(stream, ssn)
    if (expected !== reassembly.expectedSsn(stream)) {
      emit(ctx, { _tag: "Dropped", reason: "ResyncSkippedSsns" })
    }
    let delivered = 0
    for (const message of messages) delivered += message.data.length
    if (reassembly.bufferedBytes + delivered < before) {
      emit(ctx, { _tag: "Dropped", reason: "ResyncIncomplete" })
    }
    for (const message of messages) emit(ctx, { _tag: "Message", ...message })
  }
  if (gt32(tracker.cumulative, resync.untilTsn) || resync.seenStreams.length >= st.inboundStreams) {
    st.inboundResync = undefined
  }
}

/**
 * FORWARD TSN received (RFC 3758 §3.6): the cumulative TSN moves to the New Cumulative
 * TSN as if every TSN up to it had arrived, buffered fragments that can no longer complete
 * are dropped, each listed ordered stream skips its SSNs up to the one given (delivering
 * the complete messages that were waiting), and a SACK goes out at once. One at or behind
 * the cumulative TSN is out of date: only SACKed (its SACK may have been lost). Without
 * PR-SCTP negotiated the chunk is unknown (type 192: skip and report, §3.2).
 */
export const onForwardTsn = (
  ctx: Ctx,
  st: State,
  chunk: Chunk.ForwardTsn,
  from: PeerAddress,
  index: number,
): void => {
  const tracker = st.tracker
  const reassembly = st.reassembly
  if (!receivesData(st) || tracker === undefined || reassembly === undefined) {
    emit(ctx, { _tag: "Dropped", reason: "ForwardTsnNotExpected" })
    return
  }
  if (!st.forwardTsnSupported) {
    queueChunk(ctx, st, pathAddress(st, index, from), {
      _tag: "OperationError",
      causes: [{ _tag: "UnrecognizedChunkType", chunk: Chunk.encodeChunk(chunk) }],
    })
    return
  }
  st.sackNow = true
  if (index >= 0) st.lastDataPath = index
  if (!tracker.skipTo(chunk.newCumulativeTsn)) return
  const skips: Array<number> = []
  for (const entry of chunk.streams) skips.push(entry.stream, entry.ssn)
  const { messages, droppedBytes } = reassembly.abandon(tracker.cumulative, skips)
  if (droppedBytes > 0) emit(ctx, { _tag: "Dropped", reason: "ForwardTsnAbandoned" })
  for (const message of messages) emit(ctx, { _tag: "Message", ...message })
}

export const afterData = (ctx: Ctx, st: State, index: number): void => {
  if (index >= 0) st.lastDataPath = index
  // DATA after a takeover: the peer is sending; probe its hole at full pace again.
  if (st.takeoverHole !== undefined) st.takeoverHole.quietProbes = 0
  st.packetsSinceSack++
  if (st.tracker?.hasGaps === true || st.packetsSinceSack >= 2) st.sackNow = true
  if (st.name === "ShutdownSent") {
    // §9.2: each packet with DATA in SHUTDOWN-SENT is answered with a SHUTDOWN, T2 restarted.
    st.sackNow = true
    queueChunk(ctx, st, addressOf(st.paths[dataPath(st)]!), {
      _tag: "Shutdown",
      cumulativeTsnAck: st.tracker!.cumulative,
    })
    setTimer(ctx, st, "T2-shutdown", ctx.now + st.paths[dataPath(st)]!.rto.rto)
  }
  if (!st.sackNow && st.timers.SACK === undefined)
    setTimer(ctx, st, "SACK", ctx.now + st.config.sackDelayMs)
}

export const buildSack = (st: State): Chunk.Sack => {
  const tracker = st.tracker!
  const room = Math.max(0, Math.floor((st.config.mtu - Packet.headerLength - 16) / 4))
  const gapAckBlocks = tracker.gapBlocks(Math.min(room, 512))
  const duplicateTsns = tracker.takeDuplicates(Math.min(room - gapAckBlocks.length, 128))
  return {
    _tag: "Sack",
    cumulativeTsnAck: tracker.cumulative,
    advertisedReceiverWindowCredit: Math.max(0, st.config.receiveWindow - inboundBufferedBytes(st)),
    gapAckBlocks,
    duplicateTsns,
  }
}
