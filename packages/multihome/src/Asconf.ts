/**
 * Dynamic address reconfiguration (RFC 5061): the serial-number rules of ASCONF and
 * ASCONF-ACK, the requests this endpoint sends (Set Primary Address, on a takeover: "send
 * new data to my address now"), and the answers it gives to a peer's requests.
 *
 * ASCONF and ASCONF-ACK are only ever sent and accepted behind a valid AUTH chunk (RFC 5061
 * §4.1.1, RFC 4895): without one an ASCONF is silently discarded and changes nothing. The
 * association state (`Association.State`) keeps the serial numbers, so a replica goes on
 * where the primary stopped.
 *
 * @since 0.1.0
 */
import type * as Association from "./Association.ts"
import type * as Chunk from "./Chunk.ts"
import { gt32 } from "./Serial.ts"

/**
 * The ASCONF error causes (RFC 5061 §4.3).
 *
 * @since 0.1.0
 * @category constants
 */
export const CauseCode = {
  DeleteLastRemainingAddress: 0x00a0,
  ResourceShortage: 0x00a1,
  DeleteSourceAddress: 0x00a2,
  IllegalAsconfAck: 0x00a3,
  NoAuthorization: 0x00a4,
} as const

/**
 * What a received ASCONF's serial number means (RFC 5061 §5.2, C1–C4), given the peer's
 * last processed serial number (initially its initial TSN − 1).
 *
 * - `Next`: process it.
 * - `Retransmission`: the last one again: answer with the cached ASCONF-ACK.
 * - `Stale`: anything else: discard it (an old packet or an attacker).
 *
 * @since 0.1.0
 * @category serial numbers
 */
export type SerialCheck = "Next" | "Retransmission" | "Stale"

/**
 * Checks a received ASCONF's serial number.
 *
 * @since 0.1.0
 * @category serial numbers
 */
export const checkSerial = (peerSerial: number, serial: number): SerialCheck =>
  serial === (peerSerial + 1) >>> 0
    ? "Next"
    : serial === peerSerial >>> 0
      ? "Retransmission"
      : "Stale"

/**
 * What a received ASCONF-ACK means to the sender (RFC 5061 §5.3): `Matches` the one
 * outstanding; `Illegal` acknowledges a serial number never sent (ABORT with Illegal
 * ASCONF-ACK, §5.3); `Stale` anything else (discarded).
 *
 * @since 0.1.0
 * @category serial numbers
 */
export const checkAck = (
  pending: number | undefined,
  lastSent: number,
  serial: number,
): "Matches" | "Illegal" | "Stale" =>
  pending !== undefined && serial === pending
    ? "Matches"
    : gt32(serial, lastSent)
      ? "Illegal"
      : "Stale"

/**
 * The error cause answering a request (RFC 5061 §5.2): the cause, its value the request
 * itself (type-length-value), as usrsctp and the RFC's examples quote it.
 *
 * @since 0.1.0
 * @category responses
 */
export const refusal = (
  request: Chunk.AsconfParameter,
  code: number,
  encoded: Uint8Array,
): Chunk.AsconfParameter => ({
  _tag: "ErrorCauseIndication",
  correlationId: "correlationId" in request ? request.correlationId : 0,
  causes: [
    code === 5
      ? { _tag: "UnresolvableAddress", address: encoded }
      : code === 7
        ? { _tag: "InvalidMandatoryParameter" }
        : code === 8
          ? { _tag: "UnrecognizedParameters", parameters: encoded }
          : { _tag: "UnknownCause", code, value: encoded },
  ],
})

/**
 * The ASCONF this endpoint sends when it takes over (RFC 5061 §4.1.1, §5.1): Set Primary
 * Address = its own address, which it also names as the sender's address.
 *
 * @since 0.1.0
 * @category requests
 */
export const setPrimary = (serialNumber: number, address: Chunk.Parameter): Chunk.Asconf => ({
  _tag: "Asconf",
  serialNumber,
  address,
  parameters: [{ _tag: "SetPrimaryAddress", correlationId: serialNumber, address }],
})

/**
 * Whether an address parameter is the wildcard (0.0.0.0 or ::), which stands for the
 * packet's source address (RFC 5061 §4.2.1–4.2.3).
 *
 * @since 0.1.0
 * @category requests
 */
export const isWildcard = (address: Chunk.Parameter): boolean =>
  (address._tag === "Ipv4Address" || address._tag === "Ipv6Address") &&
  address.address.every((byte) => byte === 0)

/**
 * Whether the peer acknowledged every ASCONF this end sent (a takeover's Set Primary
 * Address): it sends to the address asked for now. False while one waits for its ASCONF-ACK,
 * and when the association did not negotiate ASCONF (nothing could be asked).
 *
 * @since 0.1.0
 * @category requests
 */
export const acknowledged = (state: Association.State): boolean =>
  state.asconf !== undefined && state.asconf.pending === undefined
