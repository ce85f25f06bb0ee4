/**
 * The association machine: INIT handling shared with the Listener.
 */

import * as Chunk from "../../Chunk.ts"
import * as Cookie from "../../Cookie.ts"
import * as S from "../association-support.ts"
import type { Config } from "./config.ts"
import {
  encodeParameters,
  extensionParameters,
  localAddressParameters,
  peerExtensionParameters,
} from "./creation.ts"
import type { PeerAddress } from "./models.ts"

/**
 * The parts of an INIT this endpoint checks before answering it (§3.3.2, §5.1.2).
 *
 * @since 0.1.0
 * @category handshake
 */
export type InitCheck =
  | { readonly _tag: "Ok"; readonly unrecognized: ReadonlyArray<Chunk.UnknownParameter> }
  | { readonly _tag: "Discard" }
  | { readonly _tag: "Abort"; readonly causes: ReadonlyArray<Chunk.ErrorCause> }

/**
 * Checks an INIT or INIT ACK: an INIT with Initiate Tag 0 is discarded silently (§3.3.2);
 * otherwise non-zero Initiate Tag, OS and MIS (§3.3.2, §3.3.3: otherwise ABORT), no Host Name Address (§5.1.2: ABORT, Unresolvable Address), unrecognized
 * parameters by their upper bits (§3.2.1).
 *
 * @since 0.1.0
 * @category handshake
 */
export const checkInit = (init: Chunk.Init | Chunk.InitAck): InitCheck => {
  // §3.3.2: an INIT with Initiate Tag 0 is silently discarded (an INIT ACK's is fatal, §3.3.3).
  if (init._tag === "Init" && init.initiateTag === 0) return { _tag: "Discard" }
  if (init.initiateTag === 0 || init.outboundStreams === 0 || init.inboundStreams === 0) {
    return { _tag: "Abort", causes: [{ _tag: "InvalidMandatoryParameter" }] }
  }
  const hostName = Chunk.refuseHostNameAddress(init.parameters)
  if (hostName !== undefined) return { _tag: "Abort", causes: [hostName] }
  const processed = Chunk.processUnknownParameters(init.parameters)
  return { _tag: "Ok", unrecognized: processed.report }
}

/**
 * Builds the INIT ACK answering `init` (§5.1 B, §5.2): a fresh or given Initiate Tag and
 * initial TSN, our addresses, a State Cookie sealed with `secrets`, and an Unrecognized
 * Parameter for each INIT parameter whose upper bits ask for a report.
 *
 * @since 0.1.0
 * @category handshake
 */
export const initAckFor = (options: {
  readonly config: Config
  readonly secrets: Cookie.CookieSecrets
  readonly init: Chunk.Init
  readonly unrecognized: ReadonlyArray<Chunk.UnknownParameter>
  readonly from: PeerAddress
  readonly peerPort: number
  readonly myTag: number
  readonly myInitialTsn: number
  readonly nowMs: number
  readonly tieTagLocal?: number
  readonly tieTagPeer?: number
  /** Our RANDOM (RFC 4895 §3.1), from the CSPRNG: required when `config.auth` is on. */
  readonly authRandom?: Uint8Array
}): Chunk.InitAck => {
  const { config, init } = options
  const authRandom = config.auth ? options.authRandom : undefined
  const listed = S.listedAddresses(init.parameters)
  const source = S.canonicalHost(options.from.host)
  const peerAddresses = listed.filter((host) => host !== source)
  const contents: Cookie.CookieContents = {
    myTag: options.myTag,
    peerTag: init.initiateTag,
    myInitialTsn: options.myInitialTsn,
    peerInitialTsn: init.initialTsn,
    peerRwnd: init.advertisedReceiverWindowCredit,
    outboundStreams: Math.min(config.outboundStreams, init.inboundStreams),
    inboundStreams: Math.min(config.inboundStreamsMax, init.outboundStreams),
    localPort: config.localPort,
    peerPort: options.peerPort,
    peerAddresses,
    ...(peerAddresses.length < listed.length ? { sourceListed: true } : {}),
    createdMs: options.nowMs,
    lifespanMs: config.validCookieLifeMs,
    ...(init.parameters.some((p) => p._tag === "ForwardTsnSupported") ? { forwardTsn: true } : {}),
    ...(options.tieTagLocal === undefined ? {} : { tieTagLocal: options.tieTagLocal }),
    ...(options.tieTagPeer === undefined ? {} : { tieTagPeer: options.tieTagPeer }),
    // The cookie remembers both ends' AUTH parameters: the association key needs them.
    ...(authRandom === undefined
      ? {}
      : {
          extra: encodeParameters([
            { _tag: "Random", random: authRandom },
            ...peerExtensionParameters(init.parameters),
          ]),
        }),
  }
  const cookie = Cookie.seal(options.secrets, contents)
  const parameters: Array<Chunk.Parameter> = [
    ...localAddressParameters(config).filter((p) => p._tag !== "SupportedAddressTypes"),
    { _tag: "StateCookie", cookie },
    // RFC 3758 §3.3.1: PR-SCTP offered (FORWARD TSN understood).
    { _tag: "ForwardTsnSupported" },
    ...(authRandom === undefined ? [] : extensionParameters(config, authRandom)),
    ...options.unrecognized.map(Chunk.unrecognizedParameter),
  ]
  return {
    _tag: "InitAck",
    initiateTag: options.myTag,
    advertisedReceiverWindowCredit: config.receiveWindow,
    outboundStreams: config.outboundStreams,
    inboundStreams: config.inboundStreamsMax,
    initialTsn: options.myInitialTsn,
    parameters,
  }
}
