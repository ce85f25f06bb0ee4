/**
 * The staggered election of a fault-tolerant server group (seed 003) as one pure `Machine`:
 * a master and backups; each backup inquires of its master on an equally periodic detection
 * timer (claims 4–5, 24–25); one whose inquiry goes unanswered within `inquiryTimeoutMs`
 * enters waiting and sets its election timer to its own election delay (claims 7, 9–13,
 * computed by `Delays` from the measured delay matrix); when it expires it declares itself
 * master with a first message (claim 8). A server that receives a declaration acknowledges it
 * when waiting or backup (claims 16–17); a master compares indices: it accepts a smaller
 * index (claim 22) and revokes a greater one with a second message carrying both indices
 * (claim 23). The master replicates client requests to every backup, all of them apply the
 * committed ones (claim 1, active replication; see `Replication`).
 *
 * Epochs: `epoch = term * 4096 + (4095 - index)`, unique per server, and within a term a
 * smaller index is newer. Every message carries the sender's epoch and is checked once
 * before dispatch, as raft does: older ones are ignored (event `Ignored`), except a `Probe`,
 * which is still answered so that a restarted or partitioned server learns the current
 * epoch. A newer epoch vouched for by its master or a follower makes a waiting or backup
 * server acknowledge that master, and a master compare indices (accept or revoke).
 *
 * Restarts: with a write-ahead log (`Config.restored`, see `Durable`), a restarted server
 * gets back its term, its promise (epoch) and its log, and is not amnesiac. Without one,
 * nothing is persisted, so `init` runs afresh on a cold start and on a restart alike, and
 * the server starts amnesiac (`State.amnesiac`, with a new `incarnation`, the
 * clock reading at its start). Its sync replies, acknowledgements and probe replies say so,
 * and a master does not count it towards its sync or commit majority unless nobody it heard
 * from knows of any history (`State.history`: some server held a non-empty log; probes spread
 * it), or, for the sync, every server replied. A synced master catches it up
 * (`Replicate.catchUp`, `safeSeq`) once a majority of non-amnesiacs (`State.heard`), or every
 * other server amnesiac or not (`State.heardAll`), told it of no newer epoch, after which it
 * counts again. Without this a restarted server's empty reply let a master of an older log
 * count a majority and overwrite committed entries (FastSim seed 335), and a restarted server
 * caught up by a stale master let it commit over a newer master's entries (seed 8412). Without
 * the second way, a majority that restarted stayed amnesiac for good even once every server
 * was back (too few non-amnesiacs left to tell them): its master could commit nothing more, so
 * the others never applied what it had answered last (seed 1966). See `Replication` for
 * exactly what is guaranteed; in short: safe unless every holder of a committed entry is lost
 * or a cut-off majority restarts at once, and while a majority is amnesiac or unreachable
 * with no synced master left, the group commits nothing new (it still applies what is known
 * committed) until that changes.
 *
 * Not covered without a write-ahead log: a restarted former master that hears only of older
 * terms than its last one declares again at an epoch it already used; if no server holding
 * that epoch's earlier entries takes part in its sync, two different entries can carry the
 *
 * Layout: this module is the public entry and composes the parts under `internal/`, one per
 * concept of the protocol (as etcd's raft lays out its state machine):
 * - `config.ts`, `epoch.ts`, `state.ts`: the configuration, epochs and terms, the commands,
 *   events and state (all re-exported here); `settings.ts`: the configuration with its
 *   defaults, as every part reads it;
 * - `start.ts`: a start, cold or from the write-ahead log;
 * - `receive.ts`: the check every message passes before dispatch (sender, size, epoch);
 * - `detection.ts`: probes, inquiries, round trips, and the master's heartbeat;
 * - `election.ts`: waiting, staggered delays, declare, acknowledge, accept, revoke;
 * - `sync.ts`: a new master's sync, before it serves;
 * - `master.ts`: a synced master's requests, acknowledgements and commit point;
 * - `reads.ts`: read-index rounds and the leader lease;
 * - `replicate.ts`: sending the log (entries, or the snapshot in chunks);
 * - `backup.ts`: a backup's side (accept, acknowledge, answer a sync);
 * - `snapshot.ts`: receiving a snapshot; `apply.ts`: applying what is committed.
 *
 * @since 0.1.0
 */
import { Machine as M } from "@understudy/machine"
import { Result } from "effect"
import * as Delays from "./Delays.ts"
import { type Config, validate } from "./internal/config.ts"
import { onDetect } from "./internal/detection.ts"
import { onElection, onInquiryTimeout, ownRow } from "./internal/election.ts"
import { onSubmit, onSubmitMany } from "./internal/master.ts"
import { onRead, onReadMany } from "./internal/reads.ts"
import { onReceive } from "./internal/receive.ts"
import { type Step, settingsOf } from "./internal/settings.ts"
import { init } from "./internal/start.ts"
import {
  type Command,
  detectTimer,
  electionTimer,
  inquiryTimer,
  leaseTimer,
  type StaggeredElection,
  type State,
} from "./internal/state.ts"
import { onLeaseWaited } from "./internal/sync.ts"
import type * as Message from "./Message.ts"
import * as Rank from "./Rank.ts"
import * as Replication from "./Replication.ts"

export {
  type Config,
  InvalidConfig,
  type Lease,
  leaseOf,
  leaseWaitMs,
  validate,
} from "./internal/config.ts"
export {
  epochOf,
  masterIndexOf,
  reachableTerm,
  termMax,
  termOf,
  termReach,
} from "./internal/epoch.ts"
export {
  type Command,
  detectTimer,
  type Event,
  electionTimer,
  inquiryTimer,
  type Leader,
  leaseTimer,
  type Read,
  type ReadMany,
  type StaggeredElection,
  type State,
  type Submit,
  type SubmitMany,
} from "./internal/state.ts"

/**
 * Who this server believes is master, and whether it is itself. For tests and drivers.
 *
 * @since 0.1.0
 * @category getters
 */
export const isMaster = (state: State<unknown, unknown, unknown>): boolean =>
  state.role === "master"

/**
 * The applied entries still held, in order: those after the snapshot (all of them when
 * nothing is compacted), from position `state.replica.base.seq + 1`.
 *
 * @since 0.1.0
 * @category getters
 */
export const applied = <Req>(
  state: State<unknown, Req, unknown>,
): ReadonlyArray<Message.Entry<Req>> => Replication.appliedEntries(state.replica)

/**
 * The machine of one server. Throws `InvalidConfig` or `Rank.InvalidGroup` for a
 * configuration `validate` rejects: a bad configuration is a programming error.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <S, Req, Res>(config: Config<S, Req, Res>): StaggeredElection<S, Req, Res> => {
  const invalid = validate(config)
  if (invalid !== undefined) throw invalid
  const settings = settingsOf(config)
  type St = State<S, Req, Res>
  type In = M.Input<Message.Message<Req>, Command<Req>>

  const dispatch = (state: St, input: In): Step<S, Req, Res> => {
    switch (input._tag) {
      case "Receive":
        return onReceive(settings, state, input.from, input.message, input.nowMs)
      case "TimerFired":
        switch (input.timer) {
          case detectTimer:
            return onDetect(settings, state, input.nowMs)
          case inquiryTimer:
            return onInquiryTimeout(settings, state)
          case electionTimer:
            return onElection(settings, state, input.nowMs)
          case leaseTimer:
            return onLeaseWaited(settings, state, input.nowMs)
          default:
            return M.result(state)
        }
      case "Command":
        switch (input.command._tag) {
          case "Read":
            return onRead(settings, state, input.command, input.nowMs)
          case "ReadMany":
            return onReadMany(settings, state, input.command.readIds, input.nowMs)
          case "SubmitMany":
            return onSubmitMany(settings, state, input.command, input.nowMs)
          case "Submit":
            return onSubmit(settings, state, input.command, input.nowMs)
        }
    }
  }

  return {
    init: (context) => init(settings, context),
    step: (state, input) =>
      noteLeaseHeld(
        state,
        noteTerm(state, noteHistory(dispatch(state, input)), input.nowMs),
        input.nowMs,
      ),
  }
}

/** A server that holds a log or a commit point knows the group has history. */
const noteHistory = <S, Req, Res>(result: Step<S, Req, Res>): Step<S, Req, Res> =>
  result.state.history ||
  (result.state.replica.log.length === 0 && result.state.replica.commitSeq === 0)
    ? result
    : { ...result, state: { ...result.state, history: true } }

/** Notes when the term rose: the reach of the next newer term counts from then. */
const noteTerm = <S, Req, Res>(
  before: State<S, Req, Res>,
  result: Step<S, Req, Res>,
  nowMs: number,
): Step<S, Req, Res> =>
  result.state.term === before.term
    ? result
    : { ...result, state: { ...result.state, termRaisedMs: nowMs } }

/** A master that leaves its epoch stops holding its lease now (see `State.grantedMs`). */
const noteLeaseHeld = <S, Req, Res>(
  before: State<S, Req, Res>,
  result: Step<S, Req, Res>,
  nowMs: number,
): Step<S, Req, Res> =>
  before.role === "master" &&
  (result.state.role !== "master" || result.state.epoch !== before.epoch)
    ? { ...result, state: { ...result.state, grantedMs: nowMs } }
    : result

/**
 * The terms of a server's current election delay, as a structure and a line of text, from
 * what it knows now: for logs and for checking claims 10–13 by hand.
 *
 * @since 0.1.0
 * @category getters
 */
export const explainDelays = (
  config: Pick<
    Config<unknown, unknown, unknown>,
    "servers" | "baseDelayMs" | "floorDelayMs" | "unknownDelayMs" | "inquiryTimeoutMs"
  >,
  state: State<unknown, unknown, unknown>,
): Delays.Explanation =>
  Delays.explain({
    servers: Result.getOrThrow(Rank.rank(config.servers)),
    self: state.self,
    failed: state.failed,
    matrix: { ...state.rows, [state.self]: ownRow(state) },
    baseDelayMs: config.baseDelayMs,
    floorDelayMs: config.floorDelayMs ?? 1,
    unknownDelayMs: config.unknownDelayMs ?? config.inquiryTimeoutMs,
  })
