/**
 * The control protocol of an object bundle, as pure functions: a control connection plus
 * one data connection per transfer, checkpointed as one bundle. The client numbers its commands (`LIST`, `GET name`, `PAUSE transfer`,
 * `RESUME transfer`) from the control channel's initial sequence number, one at a time; the
 * server applies each once, in order, checkpoints its effect and only then replies. So after
 * a takeover the checkpoint holds every command the client saw answered (a `PAUSE`d transfer
 * stays paused), the next command number tells the client what to send again, and the last
 * reply, kept in the checkpoint, answers a command applied whose reply was lost.
 *
 * @since 0.1.0
 */
import { Result, Schema } from "effect"
import * as Checkpoint from "./Checkpoint.ts"
import { CheckpointDecodeError } from "./CheckpointError.ts"
import * as Message from "./Message.ts"

/** The application protocol recorded in a bundle's checkpoints. @since 0.1.0 @category models */
export const protocol = "understudy-bundle/1"

/** The layer name of the bundle-wide block. @since 0.1.0 @category models */
export const layer = "object-bundle"

/** Transfers per bundle: every connection of the bundle but the control one. @since 0.1.0 @category limits */
export const transfersMax = Checkpoint.limits.connectionsPerBundleMax - 1

/** One transfer: a data connection sending one object. @since 0.1.0 @category models */
export interface Transfer {
  /** The data connection's name in the bundle: `data-1`, `data-2`, ... */
  readonly channel: string
  readonly name: string
  readonly size: number
  /** Sequence number of the object's first byte on its data connection. */
  readonly initialSeq: number
  readonly paused: boolean
  readonly transport: Checkpoint.ConnectionTransport
  /** `udp-multicast`: the group the data goes to. */
  readonly group?: Checkpoint.Endpoint
}

/** @since 0.1.0 @category models */
export interface State {
  /** The next command number expected: every command below it was applied. */
  readonly nextCommand: number
  readonly transfers: ReadonlyArray<Transfer>
  /** The reply to the last command applied. */
  readonly lastReply: Message.Reply | undefined
}

/** @since 0.1.0 @category constructors */
export const initial = (controlInitialSeq: number): State => ({
  nextCommand: controlInitialSeq,
  transfers: [],
  lastReply: undefined,
})

/** What the server looked up for a command before applying it. @since 0.1.0 @category models */
export interface Lookup {
  /** For `LIST`: the objects. */
  readonly objects?: ReadonlyArray<{ readonly name: string; readonly size: number }>
  /** For `GET`: the object's size, undefined when there is none by that name. */
  readonly size?: number | undefined
  /** For `GET`: a fresh random initial sequence number for the new data connection. */
  readonly initialSeq?: number
  /** For `GET` over `udp-multicast`: the group the server chose. */
  readonly group?: Checkpoint.Endpoint
  /** For `GET`: why the server can not carry the transport asked for. */
  readonly unsupported?: string
}

/** @since 0.1.0 @category models */
export type Applied =
  /** A new command, applied: checkpoint `state`, then send `reply`. */
  | { readonly _tag: "Applied"; readonly state: State; readonly reply: Message.Reply }
  /** The command before `nextCommand` again (its reply was lost): send `reply` again. */
  | { readonly _tag: "Again"; readonly reply: Message.Reply }
  /** Out of order (a command skipped, or one older than the last): a protocol error. */
  | { readonly _tag: "OutOfOrder"; readonly expected: number }

/**
 * Applies one command. Refusals (`GET` of an unknown object, `PAUSE` of an unknown
 * transfer, a full bundle) are applied commands too, answered `ok: false`.
 *
 * @since 0.1.0
 * @category operations
 */
export const apply = (state: State, command: Message.Command, lookup: Lookup): Applied => {
  if (command.seq === state.nextCommand - 1 && state.lastReply?.seq === command.seq)
    return { _tag: "Again", reply: state.lastReply }
  if (command.seq !== state.nextCommand) return { _tag: "OutOfOrder", expected: state.nextCommand }
  const done = (transfers: ReadonlyArray<Transfer>, reply: Omit<Message.Reply, "_tag" | "seq">) => {
    const full: Message.Reply = { _tag: "Reply", seq: command.seq, ...reply }
    return {
      _tag: "Applied" as const,
      state: { nextCommand: command.seq + 1, transfers, lastReply: full },
      reply: full,
    }
  }
  switch (command.op) {
    case "LIST":
      return done(state.transfers, {
        ok: true,
        objects: (lookup.objects ?? []).slice(0, Message.listMax),
      })
    case "GET": {
      if (command.name === undefined)
        return done(state.transfers, { ok: false, detail: "GET needs a name" })
      if (lookup.size === undefined || lookup.initialSeq === undefined)
        return done(state.transfers, {
          ok: false,
          detail: `no object ${JSON.stringify(command.name)}`,
        })
      if (state.transfers.length >= transfersMax)
        return done(state.transfers, {
          ok: false,
          detail: `the bundle holds ${transfersMax} transfers, its bound`,
        })
      if (lookup.unsupported !== undefined)
        return done(state.transfers, { ok: false, detail: lookup.unsupported })
      const transport = command.transport ?? "tcp"
      if (transport === "udp-multicast" && lookup.group === undefined)
        return done(state.transfers, { ok: false, detail: "no multicast group" })
      const transfer: Transfer = {
        channel: `data-${state.transfers.length + 1}`,
        name: command.name,
        size: lookup.size,
        initialSeq: lookup.initialSeq,
        paused: command.paused === true,
        transport,
        ...(transport === "udp-multicast" && lookup.group !== undefined
          ? { group: lookup.group }
          : {}),
      }
      return done([...state.transfers, transfer], {
        ok: true,
        transfer: {
          channel: transfer.channel,
          name: transfer.name,
          size: transfer.size,
          initialSeq: transfer.initialSeq,
          ...(transport === "tcp" ? {} : { transport }),
          ...(transfer.group === undefined
            ? {}
            : { group: `${transfer.group.host}:${transfer.group.port}` }),
        },
      })
    }
    case "PAUSE":
    case "RESUME": {
      const index = state.transfers.findIndex((t) => t.channel === command.transfer)
      if (index < 0)
        return done(state.transfers, {
          ok: false,
          detail: `no transfer ${JSON.stringify(command.transfer ?? "")}`,
        })
      const transfers = state.transfers.slice()
      transfers[index] = { ...transfers[index]!, paused: command.op === "PAUSE" }
      return done(transfers, { ok: true })
    }
  }
}

/** @since 0.1.0 @category models */
export type Rejoin =
  /** The server never applied the pending command: send it again. */
  | "resend"
  /** The server applied the pending command: its reply (the last reply) follows. */
  | "reply-follows"
  /** No command pending, and the server expects the next one. */
  | "in-step"
  /** The server's checkpoint is not where this client is: a refusal, never a guess. */
  | "mismatch"

/**
 * The client's side of a takeover: the server expects command `expected`; the client's next
 * command is `next`, and it may be waiting for the reply to command `next` (pending).
 *
 * @since 0.1.0
 * @category operations
 */
export const rejoin = (next: number, pending: boolean, expected: number): Rejoin => {
  if (pending && expected === next) return "resend"
  if (pending && expected === next + 1) return "reply-follows"
  if (!pending && expected === next) return "in-step"
  return "mismatch"
}

/** The bundle-wide block: which transfers are paused and the last reply. */
const Block = Schema.Struct({
  paused: Schema.Array(Schema.String).check(Schema.isMaxLength(transfersMax)),
  lastReply: Schema.optionalKey(Message.Reply),
})
const BlockJson = Schema.toCodecJson(Block)
const encodeBlockJson = Schema.encodeSync(BlockJson)
const decodeBlockJson = Schema.decodeUnknownResult(BlockJson)
const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

/**
 * The bundle-wide block of a state (the transfers' positions are in their connections).
 *
 * @since 0.1.0
 * @category codecs
 */
export const encodeBlock = (state: State): Uint8Array =>
  encoder.encode(
    JSON.stringify(
      encodeBlockJson({
        paused: state.transfers.filter((t) => t.paused).map((t) => t.channel),
        ...(state.lastReply === undefined ? {} : { lastReply: state.lastReply }),
      }),
    ),
  )

/**
 * The state a checkpoint holds: the control connection's next command number, a transfer per
 * data connection, the paused ones and the last reply from the block. Total: a bad block or a
 * checkpoint without a control connection is a `CheckpointDecodeError`.
 *
 * @since 0.1.0
 * @category codecs
 */
export const fromCheckpoint = (
  checkpoint: Checkpoint.Checkpoint,
): Result.Result<State, CheckpointDecodeError> => {
  const fail = (detail: string) =>
    Result.fail(new CheckpointDecodeError({ what: "bundle", detail }))
  const control = checkpoint.connections.find((c) => c.role === "control")
  if (control === undefined || control.name !== "control") return fail("no control connection")
  const bytes = checkpoint.layers[layer]
  if (bytes === undefined) return fail(`no ${layer} block`)
  let json: unknown
  try {
    json = JSON.parse(decoder.decode(bytes))
  } catch (error) {
    return fail(String(error))
  }
  const block = decodeBlockJson(json)
  if (Result.isFailure(block)) return fail(block.failure.message)
  const paused = new Set(block.success.paused)
  const transfers: Array<Transfer> = []
  for (const connection of checkpoint.connections) {
    if (connection.role !== "data") continue
    if (connection.object === undefined) return fail(`${connection.name}: no object`)
    transfers.push({
      channel: connection.name,
      name: connection.object.id,
      size: connection.object.size,
      initialSeq: connection.object.firstByteSeq,
      paused: paused.delete(connection.name),
      transport: connection.transport,
      ...(connection.group === undefined ? {} : { group: connection.group }),
    })
  }
  if (paused.size > 0) return fail(`paused transfers that do not exist: ${[...paused].join(", ")}`)
  return Result.succeed({
    nextCommand: control.currentSeqDestination,
    transfers,
    lastReply: block.success.lastReply,
  })
}
