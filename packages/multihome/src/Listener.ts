/**
 * The passive side of SCTP (RFC 9260 §5.1, §8.4): what an endpoint does with a packet
 * that matches no association. An INIT gets an INIT ACK carrying a State Cookie (sealed
 * with a rotating secret, HMAC-SHA256 via `Cookie`) and no state is kept; a COOKIE ECHO
 * with a valid cookie creates the association (ESTABLISHED, COOKIE ACK, DATA bundled
 * after the COOKIE ECHO processed); anything else follows the out-of-the-blue rules.
 *
 * Tags, initial TSNs, secrets and the seeds of new associations come from the OS CSPRNG, or,
 * in simulation, from a PRNG seeded by {@link makeListener} (then it is deterministic); time
 * from `nowMs`.
 *
 * @since 0.1.0
 */
import * as Association from "./Association.ts"
import * as Auth from "./Auth.ts"
import type * as Chunk from "./Chunk.ts"
import * as Cookie from "./Cookie.ts"
import * as S from "./internal/association-support.ts"
import * as Packet from "./Packet.ts"

/**
 * The listener's state: its configuration, cookie secrets and PRNG.
 *
 * @since 0.1.0
 * @category models
 */
export interface Listener {
  readonly config: Association.Config
  readonly cookieSecrets: Cookie.CookieSecrets
  readonly rng: S.Rng
}

const secretLength = 32

/**
 * A listener on `config.localPort`, its randomness seeded by `seed`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeListener = (config: Association.Config, seed: S.Seed, nowMs = 0): Listener => {
  const rng = S.makeRng(seed)
  return {
    config,
    rng,
    cookieSecrets: Cookie.CookieSecrets.create(S.nextBytes(rng, secretLength), nowMs),
  }
}

/**
 * What the listener did with a packet: packets to send (and `Dropped` events), and a new
 * association when a COOKIE ECHO was valid (its outputs are included).
 *
 * @since 0.1.0
 * @category models
 */
export interface Outcome {
  readonly outputs: ReadonlyArray<Association.Output>
  readonly association?: Association.State
  /** The opened cookie the association was created from. */
  readonly cookie?: Cookie.CookieContents
}

type Receive = Extract<Association.Input, { _tag: "Receive" }>

const transmit = (
  listener: Listener,
  input: Receive,
  tag: number,
  chunk: Chunk.Chunk,
): Association.Output => ({
  _tag: "Send",
  to: input.from,
  message: {
    sourcePort: listener.config.localPort,
    destinationPort: input.message.sourcePort,
    verificationTag: tag,
    chunks: [chunk],
  },
})

const dropped = (reason: string): Outcome => ({
  outputs: [{ _tag: "Emit", event: { _tag: "Dropped", reason } }],
})

/**
 * Handles a packet that matched no association.
 *
 * @since 0.1.0
 * @category machine
 */
export const onUnknownPacket = (listener: Listener, input: Receive): Outcome => {
  const packet = input.message
  const config = listener.config
  if (packet.destinationPort !== config.localPort) return dropped("PortMismatch")
  if (Packet.checkBundling(packet)._tag !== "Ok") return dropped("ChunkNotAlone")
  const first = packet.chunks[0]
  if (first === undefined) return dropped("NoChunks")
  if (first._tag === "Init") {
    if (packet.verificationTag !== 0) return dropped("InitWithNonZeroTag")
    return onInit(listener, input, first)
  }
  if (first._tag === "CookieEcho") return onCookieEcho(listener, input, first)
  return outOfTheBlue(listener, input)
}

const onInit = (listener: Listener, input: Receive, init: Chunk.Init): Outcome => {
  const config = listener.config
  const check = Association.checkInit(init)
  if (check._tag === "Discard") return dropped("InitTagZero")
  if (check._tag === "Abort") {
    // §3.3.2 / §5.1.2: refused; the ABORT carries the peer's Initiate Tag (0 reflected if
    // the tag itself is the problem).
    return {
      outputs: [
        transmit(listener, input, init.initiateTag, {
          _tag: "Abort",
          reflected: init.initiateTag === 0,
          causes: check.causes,
        }),
      ],
    }
  }
  if (listener.cookieSecrets.shouldRotate(input.nowMs, config.validCookieLifeMs)) {
    listener.cookieSecrets.rotate(S.nextBytes(listener.rng, secretLength), input.nowMs)
  }
  const ack = Association.initAckFor({
    config,
    secrets: listener.cookieSecrets,
    init,
    unrecognized: check.unrecognized,
    from: input.from,
    peerPort: input.message.sourcePort,
    myTag: S.nextTag(listener.rng),
    myInitialTsn: S.nextU32(listener.rng),
    nowMs: input.nowMs,
    ...(config.auth ? { authRandom: S.nextBytes(listener.rng, Auth.randomLength) } : {}),
  })
  return { outputs: [transmit(listener, input, init.initiateTag, ack)] }
}

const onCookieEcho = (listener: Listener, input: Receive, echo: Chunk.CookieEcho): Outcome => {
  const opened = Cookie.open(listener.cookieSecrets, echo.cookie, input.nowMs)
  if (opened._tag === "Invalid") return dropped("InvalidCookie")
  if (opened._tag === "Stale") {
    // §5.1.5 step 3: ERROR Stale Cookie, to the peer's tag from the (authentic) cookie: the
    // packet's tag is ours.
    const tag = opened.contents.peerTag
    if (tag === 0) return dropped("StaleCookie")
    return {
      outputs: [
        transmit(listener, input, tag, {
          _tag: "OperationError",
          causes: [{ _tag: "StaleCookie", stalenessUs: opened.stalenessUs }],
        }),
      ],
    }
  }
  const contents = opened.contents
  if (
    input.message.verificationTag !== contents.myTag ||
    contents.peerPort !== input.message.sourcePort ||
    contents.localPort !== listener.config.localPort
  ) {
    return dropped("CookieTagMismatch")
  }
  const created = Association.fromCookie(
    listener.config,
    contents,
    input,
    S.childSeed(listener.rng),
    listener.cookieSecrets,
  )
  return { outputs: created.outputs, association: created.state, cookie: contents }
}

/** §8.4: out-of-the-blue packets. */
const outOfTheBlue = (listener: Listener, input: Receive): Outcome => {
  const packet = input.message
  for (const chunk of packet.chunks) {
    switch (chunk._tag) {
      case "Abort":
      case "ShutdownComplete":
      case "CookieAck":
        // §8.4 rules 2, 6, 7: never answered.
        return dropped(`OutOfTheBlue${chunk._tag}`)
      case "OperationError":
        if (chunk.causes.some((cause) => cause._tag === "StaleCookie")) {
          return dropped("OutOfTheBlueStaleCookie")
        }
        break
      case "ShutdownAck":
        // §8.4 rule 5: SHUTDOWN COMPLETE, T bit set, the packet's tag reflected.
        return {
          outputs: [
            transmit(listener, input, packet.verificationTag, {
              _tag: "ShutdownComplete",
              reflected: true,
            }),
          ],
        }
      default:
        break
    }
  }
  // §8.4 rule 8: ABORT with the T bit, the packet's tag reflected.
  return {
    outputs: [
      transmit(listener, input, packet.verificationTag, {
        _tag: "Abort",
        reflected: true,
        causes: [],
      }),
    ],
  }
}
