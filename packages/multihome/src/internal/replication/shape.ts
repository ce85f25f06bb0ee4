import * as Chunk from "../../Chunk.ts"

export const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)
export const isCount = (value: unknown): value is number =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= 0
const isTime = (value: unknown): value is number =>
  typeof value === "number" && Number.isFinite(value)

const checkCommand = (value: unknown): boolean => {
  if (!isRecord(value)) return false
  switch (value._tag) {
    case "Send":
      return (
        isCount(value.stream) &&
        isCount(value.ppid) &&
        value.data instanceof Uint8Array &&
        typeof value.unordered === "boolean"
      )
    case "Shutdown":
      return true
    case "Abort":
      return value.reason === undefined || typeof value.reason === "string"
    case "SetPrimary":
    case "RequestHeartbeat":
      return typeof value.host === "string"
    default:
      return false
  }
}

export const checkInput = (value: unknown): boolean => {
  if (!isRecord(value) || !isTime(value.nowMs)) return false
  switch (value._tag) {
    case "Receive":
      return (
        typeof value.host === "string" &&
        isCount(value.udpPort) &&
        value.bytes instanceof Uint8Array
      )
    case "TimerFired":
      return typeof value.timer === "string"
    case "Command":
      return checkCommand(value.command)
    default:
      return false
  }
}

// The shape of `Association.Snapshot`, checked before a copy is restored from one: a
// damaged or partial snapshot restores to a TCB that throws later, in the middle of
// `step`, where the replica can no longer say which message was wrong.

const isNumber = (value: unknown): value is number =>
  typeof value === "number" && Number.isFinite(value)
const isBoolean = (value: unknown): value is boolean => typeof value === "boolean"
const isBytes = (value: unknown): value is Uint8Array => value instanceof Uint8Array
const isString = (value: unknown): value is string => typeof value === "string"
const fieldsAre = (
  value: unknown,
  check: (field: unknown) => boolean,
  names: ReadonlyArray<string>,
): boolean => isRecord(value) && names.every((name) => check(value[name]))
const arrayOf = (value: unknown, check: (item: unknown) => boolean): boolean =>
  Array.isArray(value) && value.every(check)
const orUndefined =
  (check: (value: unknown) => boolean) =>
  (value: unknown): boolean =>
    value === undefined || check(value)

const stateNames: ReadonlyArray<string> = [
  "Closed",
  "CookieWait",
  "CookieEchoed",
  "Established",
  "ShutdownPending",
  "ShutdownSent",
  "ShutdownReceived",
  "ShutdownAckSent",
]

const checkPath = (value: unknown): boolean =>
  isRecord(value) &&
  isString(value.host) &&
  fieldsAre(value, isNumber, [
    "udpPort",
    "errorCount",
    "flightBytes",
    "heartbeatNonce",
    "lastSendMs",
    "rttTsn",
    "rttSentMs",
  ]) &&
  fieldsAre(value, isBoolean, ["confirmed", "active", "heartbeatOutstanding", "rttPending"]) &&
  isRecord(value.rto) &&
  isNumber(value.rto.rto) &&
  orUndefined(isNumber)(value.rto.srtt) &&
  orUndefined(isNumber)(value.rto.rttvar) &&
  fieldsAre(value.congestion, isNumber, ["cwnd", "ssthresh", "partialBytesAcked"])

const fragmentFields = ["stream", "ssn", "ppid"]
const fragmentFlags = ["unordered", "beginning", "ending"]
const checkQueued = (value: unknown): boolean =>
  fieldsAre(value, isNumber, fragmentFields) &&
  fieldsAre(value, isBoolean, fragmentFlags) &&
  isRecord(value) &&
  isBytes(value.data)
const checkOutstanding = (value: unknown): boolean =>
  checkQueued(value) &&
  fieldsAre(value, isNumber, ["tsn", "path", "transmissions", "missIndications"]) &&
  fieldsAre(value, isBoolean, ["acked", "inFlight", "retransmit", "fast", "fastDone"])
const checkTracker = (value: unknown): boolean =>
  isRecord(value) &&
  isNumber(value.cumulative) &&
  ["starts", "ends", "duplicates"].every((name) => arrayOf(value[name], isNumber)) &&
  (value.starts as Array<number>).length === (value.ends as Array<number>).length
const checkReassembly = (value: unknown): boolean =>
  isRecord(value) &&
  isCount(value.inboundStreams) &&
  value.inboundStreams <= 0xffff &&
  arrayOf(value.nextSsn, isCount) &&
  (value.nextSsn as Array<number>).every(
    (n, index) => index % 2 === 1 || n < (value.inboundStreams as number),
  ) &&
  arrayOf(
    value.fragments,
    (fragment) => checkQueued(fragment) && isNumber((fragment as Record<string, unknown>).tsn),
  )
const checkInit = (value: unknown): boolean =>
  isRecord(value) &&
  value._tag === "Init" &&
  fieldsAre(value, isNumber, [
    "initiateTag",
    "advertisedReceiverWindowCredit",
    "outboundStreams",
    "inboundStreams",
    "initialTsn",
  ]) &&
  arrayOf(value.parameters, (parameter) => isRecord(parameter) && isString(parameter._tag))
const checkSecrets = (value: unknown): boolean =>
  isRecord(value) &&
  isBytes(value.current) &&
  orUndefined(isBytes)(value.previous) &&
  isNumber(value.rotatedAtMs)
const checkRng = (value: unknown): boolean =>
  fieldsAre(value, (n) => isCount(n) && (n as number) <= 0xffffffff, ["a", "b", "c", "d"])

const checkAuth = (value: unknown): boolean =>
  isRecord(value) &&
  isBytes(value.key) &&
  isNumber(value.sendHmacId) &&
  isBytes(value.peerChunks) &&
  isBytes(value.localChunks) &&
  isBoolean(value.asconf)
/** An ASCONF (ACK) the TCB keeps: one the codec writes and reads back as the same kind. */
const checkAsconfChunk =
  (tag: "Asconf" | "AsconfAck") =>
  (value: unknown): boolean => {
    if (!isRecord(value) || value._tag !== tag || !isNumber(value.serialNumber)) return false
    try {
      const bytes = Chunk.encodeChunk(value as unknown as Chunk.Chunk)
      const length = (bytes[2]! << 8) | bytes[3]!
      const decoded = Chunk.decodeChunk(bytes, bytes[0]!, bytes[1]!, 4, length)
      return !Chunk.isFault(decoded) && decoded._tag === tag
    } catch {
      return false
    }
  }
const checkAsconf = (value: unknown): boolean =>
  isRecord(value) &&
  isNumber(value.nextSerial) &&
  isNumber(value.peerSerial) &&
  isString(value.pendingHost) &&
  orUndefined(isString)(value.nextPrimary) &&
  orUndefined(checkAsconfChunk("Asconf"))(value.pending) &&
  orUndefined(checkAsconfChunk("AsconfAck"))(value.lastAck)

/**
 * What is wrong with a snapshot, or undefined: every field of `Association.Snapshot` with
 * its type, and the path indexes within the paths.
 *
 * @since 0.1.0
 * @category messages
 */
export const snapshotProblem = (value: unknown): string | undefined => {
  if (!isRecord(value)) return "the snapshot is not an object"
  if (value.version !== 1) return "unknown snapshot version"
  if (!checkRng(value.rng)) return "rng"
  if (!isString(value.name) || !stateNames.includes(value.name)) return "name"
  const numbers = [
    "localPort",
    "peerPort",
    "myTag",
    "peerTag",
    "myInitialTsn",
    "peerInitialTsn",
    "outboundStreams",
    "inboundStreams",
    "primary",
    "retransmitPath",
    "peerRwnd",
    "nextTsn",
    "lastCumAck",
    "flightBytes",
    "retransmitCount",
    "fastRecoveryExit",
    "queuedBytes",
    "bufferedBytes",
    "packetsSinceSack",
    "lastDataPath",
    "errorCount",
    "initRetransmits",
  ]
  const wrongNumber = numbers.find((name) => !isNumber(value[name]))
  if (wrongNumber !== undefined) return wrongNumber
  const wrongFlag = ["fastRecovery", "sackNow", "resynchronizing"].find(
    (name) => !isBoolean(value[name]),
  )
  if (wrongFlag !== undefined) return wrongFlag
  if (!arrayOf(value.paths, checkPath)) return "paths"
  const paths = (value.paths as Array<unknown>).length
  for (const name of ["primary", "retransmitPath"]) {
    const index = value[name] as number
    if (!isCount(index) || (paths > 0 && index >= paths)) return name
  }
  if (!arrayOf(value.outstanding, checkOutstanding)) return "outstanding"
  if (!arrayOf(value.queue, checkQueued)) return "queue"
  if (!arrayOf(value.ssnOut, isNumber)) return "ssnOut"
  if (!orUndefined(checkTracker)(value.tracker)) return "tracker"
  if (!orUndefined(checkReassembly)(value.reassembly)) return "reassembly"
  if (!orUndefined(checkAuth)(value.auth)) return "auth"
  if (!orUndefined(checkAsconf)(value.asconf)) return "asconf"
  // Past COOKIE-WAIT the TCB holds the peer's TSNs and the reassembly queue (§5.1).
  if (value.name !== "CookieWait" && value.name !== "Closed") {
    if (value.tracker === undefined) return "tracker"
    if (value.reassembly === undefined) return "reassembly"
  }
  if (!orUndefined(checkInit)(value.init)) return "init"
  if (!orUndefined(isBytes)(value.cookie)) return "cookie"
  if (!checkSecrets(value.cookieSecrets)) return "cookieSecrets"
  if (!orUndefined(isNumber)(value.secretsRotatedAt)) return "secretsRotatedAt"
  const timer = (entry: unknown) =>
    Array.isArray(entry) && entry.length === 2 && isString(entry[0]) && isNumber(entry[1])
  if (!arrayOf(value.timers, timer)) return "timers"
  return undefined
}
