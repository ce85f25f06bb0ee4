/**
 * One-shot requests to servers of a pool, for the admin tool: the status of each server, and
 * publishing a signed license file (a server adopts it only when its signature verifies and
 * its sequence number is greater than its own; the leader then spreads it to the pool).
 *
 * @since 0.1.0
 */
import { Authentication } from "@understudy/machine"
import { type Address, Datagram, type TransportError } from "@understudy/transport"
import { Clock, Duration, Effect, Option, type Redacted, Result, Stream } from "effect"
import * as Message from "./Message.ts"
import * as Signing from "./Signing.ts"

/** @since 0.1.0 @category models */
export interface Target {
  readonly id: string
  readonly address: Address.Udp
}

const zeroSecret = new Uint8Array(32)

/**
 * Sends `message` to each server and collects the replies that arrive within `timeoutMs`
 * (a server that does not answer is absent from the result).
 *
 * @since 0.1.0
 * @category requests
 */
export const ask = (
  servers: ReadonlyArray<Target>,
  message: Extract<Message.ClientRequest, { _tag: "Status" | "Publish" }>,
  poolSecret: Redacted.Redacted<Uint8Array> | "insecure",
  timeoutMs = 1_000,
): Effect.Effect<Map<string, Message.ServerReply>, TransportError.ListenError, Datagram.Datagram> =>
  Effect.scoped(
    Effect.gen(function* () {
      const insecure = poolSecret === "insecure"
      const keys = Signing.poolKeys(poolSecret === "insecure" ? zeroSecret : poolSecret)
      const sealer = Authentication.sealer(
        insecure ? Authentication.insecure : Authentication.keyed(keys.mac),
        "admin",
        yield* Clock.currentTimeMillis,
      )
      const datagram = yield* Datagram.Datagram
      const endpoint = yield* datagram.bind({
        _tag: "Udp",
        host: servers[0]?.address.host ?? "127.0.0.1",
        port: 0,
      })
      const encoded = Message.clientRequestCodec.encode(message)
      if (Result.isFailure(encoded)) return yield* Effect.die(encoded.failure)
      const byAddress = new Map(
        servers.map((server) => [`${server.address.host}:${server.address.port}`, server.id]),
      )
      const replies = new Map<string, Message.ServerReply>()
      for (const server of servers) {
        const sealed = sealer.seal(server.id, yield* Clock.currentTimeMillis, encoded.success)
        yield* endpoint.send(server.address, sealed).pipe(Effect.ignore)
      }
      yield* endpoint.messages.pipe(
        Stream.runForEachWhile((received) =>
          Effect.gen(function* () {
            const from = byAddress.get(`${received.from.host}:${received.from.port}`)
            if (from === undefined) return true
            const opened = sealer.open(from, yield* Clock.currentTimeMillis, received.bytes)
            if ("dropped" in opened) return true
            const decoded = Message.serverReplyCodec.decode(opened.payload)
            if (Result.isSuccess(decoded)) replies.set(from, decoded.success)
            return replies.size < servers.length
          }),
        ),
        Effect.timeoutOption(Duration.millis(timeoutMs)),
        Effect.map(Option.getOrUndefined),
      )
      return replies
    }),
  )
