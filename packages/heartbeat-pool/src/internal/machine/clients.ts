/**
 * Messages from clients and the admin tool: heartbeats (renewal, the heartbeat-to-request
 * conversion of claim 9), requests, releases, license publication and status.
 */
import { Machine as M } from "@understudy/machine"
import { HashMap, Option } from "effect"
import type { Event, State } from "../../Machine.ts"
import type * as Message from "../../Message.ts"
import { type Ctx, type Output, type Step, termMax } from "./context.ts"
import { capacityAt, poolSeatsInUse, seatsHeld } from "./counting.ts"

type Peer = Message.Peer
type ClientRequest = Message.ClientRequest

export const clients = (ctx: Ctx): Pick<Ctx, "offerLicense" | "fromClient"> => {
  const { servers, leaseMs, crypto, tokenTtlMs } = ctx
  const beat = (
    state: State,
    outputs: Array<Output>,
    message: Extract<ClientRequest, { _tag: "Beat" }>,
    nowMs: number,
  ): State => {
    const { client, token } = message
    const ignore = (reason: Extract<Event, { _tag: "Ignored" }>["reason"]) => {
      outputs.push(M.emit<Event>({ _tag: "Ignored", from: client, reason }))
      return state
    }
    const held = HashMap.get(state.record, client)
    // An Ed25519 verification costs ~50 µs: a token this server issued is known already.
    const issuedHere = Option.isSome(held) && held.value.tokenSignature === token.signature
    if (
      token.client !== client ||
      token.term > termMax ||
      (!issuedHere && !crypto.verifyToken(token))
    ) {
      outputs.push(M.emit<Event>({ _tag: "Ignored", from: client, reason: "bad-token" }))
      ctx.deny(state, outputs, client, message.seq, "bad-token")
      return state
    }
    if (Option.isSome(held) && message.seq <= held.value.lastSeq) return ignore("replayed")
    if (Option.isSome(held) && (held.value.renewable || state.role !== "leader")) {
      const authority = ctx.hasAuthority(state, nowMs)
      // Only while unexpired: the leader counted it from its merge on, and before that it was
      // counted where the client held it, until the end of the lease it carried here.
      const counted =
        held.value.renewable ||
        (held.value.expiresAtMs > nowMs && ctx.countedByLeader(state, held.value))
      const renew = counted && authority && capacityAt(state, nowMs) > 0
      const expiresAtMs = renew ? nowMs + leaseMs : held.value.expiresAtMs
      const fresh =
        renew && token.validUntilMs - nowMs < tokenTtlMs / 2
          ? ctx.tokenFor(state, client, held.value.seats, nowMs)
          : null
      const updated = ctx.hold(state, {
        ...held.value,
        lastSeq: message.seq,
        expiresAtMs,
        renewable: held.value.renewable || renew,
        tokenSignature: fresh?.signature ?? held.value.tokenSignature,
      })
      // Carried or restored here, not yet counted here by the leader: ask it to.
      const asked =
        !counted && authority && held.value.expiresAtMs > nowMs
          ? ctx.askLeader(
              updated,
              outputs,
              client,
              message.seq,
              held.value.seats,
              nowMs,
              true,
              held.value.heldAt,
            )
          : updated
      const next = asked === "queue-full" ? updated : asked
      ctx.reply(outputs, client, {
        _tag: "BeatAck",
        server: state.self,
        client,
        term: state.durable.term,
        seq: message.seq,
        expiresAtMs,
        extended: renew,
        token: fresh,
      })
      return next
    }
    // Claim 9: a heartbeat from a client this server never authorised becomes a request. The
    // client proves it held a seat (valid token, unexpired lease): then it was counted, and may
    // come back even while a new leader settles.
    const proven = token.validUntilMs > nowMs && message.leaseUntilMs > nowMs
    if (
      proven &&
      state.role !== "leader" &&
      ctx.licenseProblem(state, token.product, token.seats, nowMs) === undefined
    )
      return ctx.carry(state, outputs, token, message.leaseUntilMs, message.seq, nowMs)
    const next = ctx.request(
      state,
      outputs,
      client,
      message.seq,
      token.product,
      token.seats,
      nowMs,
      proven,
      ctx.heldAtOf(state, token),
    )
    const now = HashMap.get(next.record, client)
    return Option.isSome(now) ? ctx.hold(next, { ...now.value, lastSeq: message.seq }) : next
  }

  const offerLicense = (
    state: State,
    from: string,
    license: Message.License,
    outputs: Array<Output>,
  ): { readonly state: State; readonly reason: "adopted" | "bad-signature" | "not-newer" } => {
    if (!crypto.verifyLicense(license)) {
      outputs.push(
        M.emit<Event>({
          _tag: "LicenseRefused",
          sequence: license.sequence,
          from,
          reason: "bad-signature",
        }),
      )
      return { state, reason: "bad-signature" }
    }
    if (license.sequence <= (state.durable.license?.sequence ?? -1)) {
      if (license.sequence < (state.durable.license?.sequence ?? -1)) {
        outputs.push(
          M.emit<Event>({
            _tag: "LicenseRefused",
            sequence: license.sequence,
            from,
            reason: "not-newer",
          }),
        )
      }
      return { state, reason: "not-newer" }
    }
    outputs.push(M.emit<Event>({ _tag: "LicenseAdopted", sequence: license.sequence, from }))
    return { state: ctx.setDurable(state, { license }), reason: "adopted" }
  }

  const fromClient = (state: State, from: string, message: ClientRequest, nowMs: number): Step => {
    const outputs: Array<Output> = []
    switch (message._tag) {
      case "Request": {
        if (message.client !== from)
          return M.result(state, [
            M.emit<Event>({ _tag: "Ignored", from, reason: "unknown-sender" }),
          ])
        const held = HashMap.get(state.record, message.client)
        if (
          Option.isSome(held) &&
          held.value.renewable &&
          held.value.seats === message.seats &&
          held.value.expiresAtMs > nowMs
        ) {
          // A repeated request (its answer was lost): the same grant again.
          ctx.reply(outputs, from, {
            _tag: "Granted",
            server: state.self,
            term: state.durable.term,
            seq: message.seq,
            token: ctx.tokenFor(state, from, held.value.seats, nowMs),
            expiresAtMs: held.value.expiresAtMs,
            leaders: [...servers],
            reattached: false,
          })
          return M.result(state, outputs)
        }
        return M.result(
          ctx.request(
            state,
            outputs,
            from,
            message.seq,
            message.product,
            message.seats,
            nowMs,
            false,
          ),
          outputs,
        )
      }
      case "Beat":
        if (message.client !== from)
          return M.result(state, [
            M.emit<Event>({ _tag: "Ignored", from, reason: "unknown-sender" }),
          ])
        return M.result(beat(state, outputs, message, nowMs), outputs)
      case "Release": {
        const held = HashMap.get(state.record, from)
        if (message.client !== from || Option.isNone(held) || message.seq <= held.value.lastSeq)
          return M.result(state)
        outputs.push(M.emit<Event>({ _tag: "Released", client: from, expired: false }))
        ctx.reply(outputs, from, { _tag: "Released", server: state.self, client: from })
        // The leader counts a seat it reserved here until a record shows it, or for the
        // reservation's lease if none will: give it back at once (a record that showed it
        // drops it as soon as the leader merges the next one, and `Unused` is ignored then).
        const reservedAtMs = held.value.reservedAtMs
        if (state.role === "follower" && state.leader !== undefined && reservedAtMs !== undefined)
          outputs.push(
            M.send<Peer>(state.leader, {
              _tag: "Unused",
              term: state.durable.term,
              client: from,
              reservedAtMs,
            }),
          )
        return M.result(ctx.drop(state, from), outputs)
      }
      case "Publish": {
        const offered = offerLicense(state, from, message.license, outputs)
        ctx.reply(outputs, from, {
          _tag: "PublishReply",
          server: state.self,
          accepted: offered.reason === "adopted",
          reason: offered.reason,
          sequence: offered.state.durable.license?.sequence ?? 0,
        })
        return M.result(offered.state, outputs)
      }
      case "Status": {
        ctx.reply(outputs, from, {
          _tag: "StatusReply",
          server: state.self,
          role: state.role,
          term: state.durable.term,
          leader: state.leader ?? null,
          seatsInUse: seatsHeld(state, nowMs),
          clients: HashMap.size(state.record),
          poolSeatsInUse: state.role === "leader" ? poolSeatsInUse(state, nowMs, leaseMs) : null,
          capacity: capacityAt(state, nowMs),
          share: ctx.shareNow(state, nowMs),
          product: state.durable.license?.product ?? null,
          sequence: state.durable.license?.sequence ?? 0,
        })
        return M.result(state, outputs)
      }
    }
  }
  return { offerLicense, fromClient }
}
