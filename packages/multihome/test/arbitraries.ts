/** fast-check arbitraries for every chunk, parameter and error cause of the codec. */
import * as fc from "fast-check"
import type * as Chunk from "../src/Chunk.ts"
import type * as Packet from "../src/Packet.ts"

export const u8 = fc.integer({ min: 0, max: 0xff })
export const u16 = fc.integer({ min: 0, max: 0xffff })
export const u32 = fc.integer({ min: 0, max: 0xffffffff })
export const bytes = (maxLength = 40) => fc.uint8Array({ maxLength })
const exactly = (length: number) => fc.uint8Array({ minLength: length, maxLength: length })

const knownParameterTypes = new Set([5, 6, 7, 8, 9, 11, 12, 0xc000, 0x8002, 0x8003, 0x8004, 0x8008])
const knownAsconfParameterTypes = new Set([0xc001, 0xc002, 0xc003, 0xc004, 0xc005])
const knownCauseCodes = new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])
const knownChunkTypes = new Set([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15, 0x80, 192, 0xc1])

export const unknownParameter: fc.Arbitrary<Chunk.UnknownParameter> = fc.record({
  _tag: fc.constant("UnknownParameter" as const),
  type: u16.filter((type) => !knownParameterTypes.has(type)),
  value: bytes(),
})

export const parameter: fc.Arbitrary<Chunk.Parameter> = fc.oneof(
  fc.record({ _tag: fc.constant("Ipv4Address" as const), address: exactly(4) }),
  fc.record({ _tag: fc.constant("Ipv6Address" as const), address: exactly(16) }),
  fc.record({ _tag: fc.constant("StateCookie" as const), cookie: bytes(64) }),
  fc.record({ _tag: fc.constant("UnrecognizedParameter" as const), parameter: bytes() }),
  fc.record({ _tag: fc.constant("CookiePreservative" as const), lifeSpanIncrementMs: u32 }),
  fc.record({ _tag: fc.constant("HostNameAddress" as const), hostName: bytes() }),
  fc.record({
    _tag: fc.constant("SupportedAddressTypes" as const),
    addressTypes: fc.array(u16, { maxLength: 5 }),
  }),
  fc.constant({ _tag: "ForwardTsnSupported" as const }),
  fc.record({
    _tag: fc.constant("Random" as const),
    random: fc.uint8Array({ minLength: 1, maxLength: 40 }),
  }),
  fc.record({ _tag: fc.constant("ChunkList" as const), chunkTypes: bytes(8) }),
  fc.record({ _tag: fc.constant("HmacAlgo" as const), hmacIds: fc.array(u16, { maxLength: 4 }) }),
  fc.record({ _tag: fc.constant("SupportedExtensions" as const), chunkTypes: bytes(8) }),
  unknownParameter,
)

export const cause: fc.Arbitrary<Chunk.ErrorCause> = fc.oneof(
  fc.record({ _tag: fc.constant("InvalidStreamIdentifier" as const), streamIdentifier: u16 }),
  fc.record({
    _tag: fc.constant("MissingMandatoryParameter" as const),
    missingTypes: fc.array(u16, { maxLength: 5 }),
  }),
  fc.record({ _tag: fc.constant("StaleCookie" as const), stalenessUs: u32 }),
  fc.constant({ _tag: "OutOfResource" as const }),
  fc.record({ _tag: fc.constant("UnresolvableAddress" as const), address: bytes() }),
  fc.record({ _tag: fc.constant("UnrecognizedChunkType" as const), chunk: bytes() }),
  fc.constant({ _tag: "InvalidMandatoryParameter" as const }),
  fc.record({ _tag: fc.constant("UnrecognizedParameters" as const), parameters: bytes() }),
  fc.record({ _tag: fc.constant("NoUserData" as const), tsn: u32 }),
  fc.constant({ _tag: "CookieReceivedWhileShuttingDown" as const }),
  fc.record({ _tag: fc.constant("RestartWithNewAddresses" as const), addresses: bytes() }),
  fc.record({ _tag: fc.constant("UserInitiatedAbort" as const), reason: bytes() }),
  fc.record({ _tag: fc.constant("ProtocolViolation" as const), information: bytes() }),
  fc.record({
    _tag: fc.constant("UnknownCause" as const),
    code: u16.filter((code) => !knownCauseCodes.has(code)),
    value: bytes(),
  }),
)

export const asconfParameter: fc.Arbitrary<Chunk.AsconfParameter> = fc.oneof(
  fc.record({
    _tag: fc.constantFrom(
      "AddIpAddress" as const,
      "DeleteIpAddress" as const,
      "SetPrimaryAddress" as const,
    ),
    correlationId: u32,
    address: parameter,
  }),
  fc.record({
    _tag: fc.constant("ErrorCauseIndication" as const),
    correlationId: u32,
    causes: fc.array(cause, { maxLength: 3 }),
  }),
  fc.record({ _tag: fc.constant("SuccessIndication" as const), correlationId: u32 }),
  fc.record({
    _tag: fc.constant("UnknownAsconfParameter" as const),
    type: u16.filter((type) => !knownAsconfParameterTypes.has(type)),
    value: bytes(),
  }),
)

const initFields = {
  initiateTag: u32,
  advertisedReceiverWindowCredit: u32,
  outboundStreams: u16,
  inboundStreams: u16,
  initialTsn: u32,
  parameters: fc.array(parameter, { maxLength: 6 }),
}

export const unknownChunk: fc.Arbitrary<Chunk.UnknownChunk> = fc.record({
  _tag: fc.constant("UnknownChunk" as const),
  type: u8.filter((type) => !knownChunkTypes.has(type)),
  flags: u8,
  value: bytes(),
})

/** One arbitrary per chunk type, by tag, so tests can name each. */
export const chunkByTag = {
  Data: fc.record({
    _tag: fc.constant("Data" as const),
    immediate: fc.boolean(),
    unordered: fc.boolean(),
    beginning: fc.boolean(),
    ending: fc.boolean(),
    tsn: u32,
    streamIdentifier: u16,
    streamSequenceNumber: u16,
    payloadProtocolIdentifier: u32,
    userData: bytes(200),
  }),
  Init: fc.record({ _tag: fc.constant("Init" as const), ...initFields }),
  InitAck: fc.record({ _tag: fc.constant("InitAck" as const), ...initFields }),
  Sack: fc.record({
    _tag: fc.constant("Sack" as const),
    cumulativeTsnAck: u32,
    advertisedReceiverWindowCredit: u32,
    gapAckBlocks: fc.array(fc.record({ start: u16, end: u16 }), { maxLength: 8 }),
    duplicateTsns: fc.array(u32, { maxLength: 8 }),
  }),
  Heartbeat: fc.record({ _tag: fc.constant("Heartbeat" as const), info: bytes(48) }),
  HeartbeatAck: fc.record({ _tag: fc.constant("HeartbeatAck" as const), info: bytes(48) }),
  Abort: fc.record({
    _tag: fc.constant("Abort" as const),
    reflected: fc.boolean(),
    causes: fc.array(cause, { maxLength: 4 }),
  }),
  Shutdown: fc.record({ _tag: fc.constant("Shutdown" as const), cumulativeTsnAck: u32 }),
  ShutdownAck: fc.constant({ _tag: "ShutdownAck" as const }),
  OperationError: fc.record({
    _tag: fc.constant("OperationError" as const),
    causes: fc.array(cause, { maxLength: 4 }),
  }),
  CookieEcho: fc.record({ _tag: fc.constant("CookieEcho" as const), cookie: bytes(64) }),
  CookieAck: fc.constant({ _tag: "CookieAck" as const }),
  ShutdownComplete: fc.record({
    _tag: fc.constant("ShutdownComplete" as const),
    reflected: fc.boolean(),
  }),
  ForwardTsn: fc.record({
    _tag: fc.constant("ForwardTsn" as const),
    newCumulativeTsn: u32,
    streams: fc.array(fc.record({ stream: u16, ssn: u16 }), { maxLength: 8 }),
  }),
  Auth: fc.record({
    _tag: fc.constant("Auth" as const),
    sharedKeyId: u16,
    hmacId: u16,
    hmac: bytes(32),
  }),
  Asconf: fc.record({
    _tag: fc.constant("Asconf" as const),
    serialNumber: u32,
    address: parameter,
    parameters: fc.array(asconfParameter, { maxLength: 4 }),
  }),
  AsconfAck: fc.record({
    _tag: fc.constant("AsconfAck" as const),
    serialNumber: u32,
    parameters: fc.array(asconfParameter, { maxLength: 4 }),
  }),
  UnknownChunk: unknownChunk,
} satisfies { [K in Chunk.Chunk["_tag"]]: fc.Arbitrary<Extract<Chunk.Chunk, { _tag: K }>> }

export const chunk: fc.Arbitrary<Chunk.Chunk> = fc.oneof(...Object.values(chunkByTag))

export const packetWith = (chunks: fc.Arbitrary<ReadonlyArray<Chunk.Chunk>>) =>
  fc.record({ sourcePort: u16, destinationPort: u16, verificationTag: u32, chunks })

export const packet: fc.Arbitrary<Packet.Packet> = packetWith(
  fc.array(chunk, { minLength: 1, maxLength: 5 }),
)
