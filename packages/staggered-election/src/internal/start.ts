/**
 * A server's start: from nothing (amnesiac), or from its write-ahead log (`Config.restored`:
 * its term, promise and log back). Either way it probes the group at once and waits, so that
 * it follows the current master before its election delay (base above a round trip) expires.
 */
import { Machine as M } from "@understudy/machine"
import * as Replication from "../Replication.ts"
import { InvalidConfig } from "./config.ts"
import { probeAll } from "./detection.ts"
import { enterWaiting } from "./election.ts"
import { masterIndexOf, termOf } from "./epoch.ts"
import type { Output, Settings, Step } from "./settings.ts"
import { detectTimer, type State } from "./state.ts"

export const init = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  context: M.Context,
): Step<S, Req, Res> => {
  const { config, byId, byIndex } = settings
  const own = byId.get(context.self)
  if (own === undefined)
    throw new InvalidConfig({ reason: `${context.self} is not a configured server` })
  const outputs: Array<Output<Req, Res>> = []
  const restored = config.restored
  const durable =
    restored !== undefined &&
    (restored.epoch > 0 || restored.log.length > 0 || restored.base !== undefined)
      ? restored
      : undefined
  const formerMaster =
    durable === undefined || termOf(durable.epoch) === 0
      ? undefined
      : byIndex.get(masterIndexOf(durable.epoch))?.id
  let state: State<S, Req, Res> = {
    self: context.self,
    index: own.index,
    role: "waiting",
    master: undefined,
    failed: undefined,
    term: durable?.term ?? 0,
    termRaisedMs: context.nowMs,
    epoch: durable?.epoch ?? 0,
    probeSeq: 0,
    outstanding: {},
    samples: {},
    rows: {},
    inquiry: undefined,
    electionDelayMs: undefined,
    replica:
      durable === undefined
        ? Replication.empty(config.initial)
        : Replication.applyCommitted(
            {
              ...Replication.empty<S, Req, Res>(config.initial),
              ...(durable.base === undefined
                ? {}
                : {
                    base: durable.base,
                    state: durable.base.state,
                    clients: durable.base.clients,
                    appliedSeq: durable.base.seq,
                  }),
              log: durable.log,
              commitSeq: Math.min(durable.commitSeq, (durable.base?.seq ?? 0) + durable.log.length),
            },
            config.apply,
          ).replica,
    leader: undefined,
    // Without a durable state a cold start and a restart look the same: this server holds
    // nothing. With one, it kept everything it told anyone: not amnesiac.
    amnesiac: durable === undefined,
    incarnation: context.nowMs,
    grantedMs: context.nowMs,
    history: (durable?.log.length ?? 0) > 0 || durable?.base !== undefined,
    heard: {},
    heardAll: {},
    receiving: undefined,
  }
  // A replayed log is compacted at once: its tail may be longer than `logEntriesMax` allows.
  if (settings.snapshots !== undefined) {
    state = { ...state, replica: Replication.compact(state.replica, settings.compactEvery) }
  }
  // The first probe round: its replies carry the current epoch and master, so a restarted
  // server acknowledges the master before its election delay (base > a round trip) expires.
  state = probeAll(settings, state, context.nowMs, outputs)
  outputs.push(M.setTimer(detectTimer, settings.detectionPeriodMs))
  state = enterWaiting(settings, state, undefined, outputs)
  // A restored follower treats its master as given up on: if that master answers at the
  // epoch it promised, it was only slow and is followed again (no election for a restart).
  if (formerMaster !== undefined && formerMaster !== context.self) {
    state = { ...state, failed: formerMaster }
  }
  return M.result(state, outputs)
}
