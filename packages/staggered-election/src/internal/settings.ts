/**
 * What every part of one server's machine reads: its configuration with the defaults applied,
 * the ranked servers, and the few things kept across steps that are not state (the encoded
 * snapshot, the batch being submitted).
 */
import type { Machine as M } from "@understudy/machine"
import { Result } from "effect"
import type * as Message from "../Message.ts"
import * as Rank from "../Rank.ts"
import type * as Replication from "../Replication.ts"
import { type Config, leaseOf } from "./config.ts"
import type { Event, State } from "./state.ts"

/** One output of a step. */
export type Output<Req, Res> = M.Output<Message.Message<Req>, Event<Res>>

/** What a step returns: the next state and its outputs. */
export type Step<S, Req, Res> = M.Result<State<S, Req, Res>, Message.Message<Req>, Event<Res>>

export interface Settings<S, Req, Res> {
  readonly config: Config<S, Req, Res>
  readonly servers: ReadonlyArray<Rank.Ranked>
  readonly byId: ReadonlyMap<string, Rank.Ranked>
  readonly byIndex: ReadonlyMap<number, Rank.Ranked>
  readonly groupSize: number
  readonly detectionPeriodMs: number
  readonly inquiryTimeoutMs: number
  readonly baseDelayMs: number
  readonly floorDelayMs: number
  readonly unknownDelayMs: number
  readonly delayWindow: number
  readonly logEntriesMax: number
  readonly queuedSubmitsMax: number
  readonly entriesPerMessageMax: number
  readonly snapshots: Replication.SnapshotCodec<S, Res> | undefined
  readonly compactEvery: number
  readonly chunkChars: number
  readonly lease: { readonly durationMs: number; readonly waitMs: number } | undefined
  /** Rounds kept waiting for a majority: older ones are dropped (their lease would be older too). */
  readonly leaseRoundsMax: number
  /** A snapshot is sent in many chunks, and to several servers: encoded once. */
  readonly encoded: WeakMap<Replication.Snapshot<S, Res>, string>
  /** Every server but the one named, per server (one machine may run every server of a simulation). */
  readonly peers: ReadonlyMap<string, ReadonlyArray<Rank.Ranked>>
  /** Set while a `SubmitMany` is handled: `submitReady` then leaves replication to it. */
  batching: { appended: boolean } | undefined
}

/** The settings of a configuration `validate` accepted. */
export const settingsOf = <S, Req, Res>(config: Config<S, Req, Res>): Settings<S, Req, Res> => {
  const servers = Result.getOrThrow(Rank.rank(config.servers))
  return {
    config,
    servers,
    byId: new Map(servers.map((server) => [server.id, server])),
    byIndex: new Map(servers.map((server) => [server.index, server])),
    groupSize: servers.length,
    detectionPeriodMs: config.detectionPeriodMs,
    inquiryTimeoutMs: config.inquiryTimeoutMs,
    baseDelayMs: config.baseDelayMs,
    floorDelayMs: config.floorDelayMs ?? 1,
    unknownDelayMs: config.unknownDelayMs ?? config.inquiryTimeoutMs,
    delayWindow: config.delayWindow ?? 8,
    logEntriesMax: config.logEntriesMax ?? 10_000,
    queuedSubmitsMax: config.queuedSubmitsMax ?? 1_000,
    entriesPerMessageMax: config.entriesPerMessageMax ?? 64,
    snapshots: config.snapshot,
    compactEvery: config.compactEvery ?? 1_000,
    chunkChars: config.snapshotChunkChars ?? 8_000,
    lease: leaseOf(config),
    leaseRoundsMax: 64,
    encoded: new WeakMap(),
    peers: new Map(
      servers.map((self) => [self.id, servers.filter((server) => server.id !== self.id)]),
    ),
    batching: undefined,
  }
}

/** Every server of the group but this one (computed once: it is on every hot path). */
export const peersOf = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
): ReadonlyArray<Rank.Ranked> =>
  settings.peers.get(state.self) ?? settings.servers.filter((server) => server.id !== state.self)
