/**
 * The association machine: Read helpers.
 */
import type { State, StateName } from "./state.ts"

/**
 * A path as {@link info} shows it.
 *
 * @since 0.1.0
 * @category accessors
 */
export interface PathStatus {
  readonly host: string
  readonly udpPort: number
  readonly confirmed: boolean
  readonly active: boolean
  readonly errorCount: number
  readonly rtoMs: number
  readonly srttMs: number | undefined
  readonly cwnd: number
  readonly ssthresh: number
  readonly flightBytes: number
}

/**
 * A read-only summary of the TCB.
 *
 * @since 0.1.0
 * @category accessors
 */
export interface Status {
  readonly state: StateName
  readonly myTag: number
  readonly peerTag: number
  readonly localPort: number
  readonly peerPort: number
  readonly paths: ReadonlyArray<PathStatus>
  readonly primary: string | undefined
  readonly peerRwnd: number
  readonly flightBytes: number
  readonly queuedBytes: number
  readonly outstandingChunks: number
  readonly nextTsn: number
  readonly cumulativeTsnAcked: number
  readonly peerCumulativeTsn: number | undefined
  readonly errorCount: number
  readonly inboundStreams: number
  readonly outboundStreams: number
}

/**
 * A summary of the association for status displays and tests.
 *
 * @since 0.1.0
 * @category accessors
 */
export const info = (st: State): Status => ({
  state: st.name,
  myTag: st.myTag,
  peerTag: st.peerTag,
  localPort: st.localPort,
  peerPort: st.peerPort,
  paths: st.paths.map((path) => ({
    host: path.host,
    udpPort: path.udpPort,
    confirmed: path.confirmed,
    active: path.active,
    errorCount: path.errorCount,
    rtoMs: path.rto.rto,
    srttMs: path.rto.srtt,
    cwnd: path.congestion.cwnd,
    ssthresh: path.congestion.ssthresh,
    flightBytes: path.flightBytes,
  })),
  primary: st.paths[st.primary]?.host,
  peerRwnd: st.peerRwnd,
  flightBytes: st.flightBytes,
  queuedBytes: st.queuedBytes,
  outstandingChunks: st.outstanding.length - st.outstandingHead,
  nextTsn: st.nextTsn,
  cumulativeTsnAcked: st.lastCumAck,
  peerCumulativeTsn: st.tracker?.cumulative,
  errorCount: st.errorCount,
  inboundStreams: st.inboundStreams,
  outboundStreams: st.outboundStreams,
})

/** The tag packets to us carry (for demultiplexing). @since 0.1.0 @category accessors */
export const myTag = (st: State): number => st.myTag
/** The tag we put on packets to the peer (0 before it is known). @since 0.1.0 @category accessors */
export const peerTag = (st: State): number => st.peerTag
/** The peer's SCTP port. @since 0.1.0 @category accessors */
export const peerPort = (st: State): number => st.peerPort
/** The peer's addresses (the paths' hosts, canonical text). @since 0.1.0 @category accessors */
export const peerHosts = (st: State): ReadonlyArray<string> => st.paths.map((path) => path.host)
/** The state name. @since 0.1.0 @category accessors */
export const stateName = (st: State): StateName => st.name
/**
 * User bytes `Send` accepts now before failing with "WouldBlock".
 *
 * @since 0.1.0
 * @category accessors
 */
export const sendBufferAvailable = (st: State): number =>
  Math.max(0, st.config.sendBufferBytes - st.bufferedBytes)
