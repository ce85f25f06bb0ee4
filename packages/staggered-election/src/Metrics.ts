/**
 * The staggered election's metrics and spans, recorded by the driver (`ServerGroup`) from
 * each step of a server's machine (the state before and after, its events) and from what
 * only the driver knows (the name server's registration, the bytes on the wire, the answers
 * to clients): elections and takeovers; failovers, from the last message this server heard
 * from the master it declared lost to a new master serving, with the detection part (to the
 * declaration) on its own; the role, term and epoch; the servers in view; replication
 * (entries appended and committed, each backup's lag, bytes sent); reads by mode and
 * refusals by reason. Each election, takeover and failover is a span
 * (`staggered-election.election`, `.takeover`, `.failover`) ended with its `outcome`.
 *
 * Gauges carry the `server` they describe, so servers run in one process stay apart.
 *
 * @since 0.1.0
 */
import { type Runner, Spans } from "@understudy/machine"
import { Effect, Metric, type Tracer } from "effect"
import * as Machine from "./Machine.ts"
import type * as Message from "./Message.ts"
import * as Replication from "./Replication.ts"

const boundaries = Metric.exponentialBoundaries({ start: 1, factor: 2, count: 16 })

/** @since 0.1.0 @category metrics */
export const elections = Metric.counter("understudy_staggered_election_elections_total", {
  description:
    "Elections this server took part in, by outcome (started: it waits its election delay; won: it declared itself master; lost: it followed another master while waiting; revoked: it took the mastership over from a less capable master)",
})
/** @since 0.1.0 @category metrics */
export const failoverMs = Metric.histogram("understudy_staggered_election_failover_ms", {
  description:
    "From the last message this server heard from the master it declared lost to a new master serving (role master: this server, registered; role backup: the master it follows), in ms",
  boundaries,
})
/** @since 0.1.0 @category metrics */
export const detectionMs = Metric.histogram("understudy_staggered_election_detection_ms", {
  description:
    "From the last message this server heard from its master to declaring it lost (its inquiry unanswered), in ms",
  boundaries,
})
/** @since 0.1.0 @category metrics */
export const takeoverMs = Metric.histogram("understudy_staggered_election_takeover_ms", {
  description:
    "From becoming master (declared or revoked) to serving (synced and registered in the name server), in ms",
  boundaries,
})
/** @since 0.1.0 @category metrics */
export const role = Metric.gauge("understudy_staggered_election_role", {
  description: "1 for the role this server holds (master, backup, waiting), 0 for the others",
})
/** @since 0.1.0 @category metrics */
export const term = Metric.gauge("understudy_staggered_election_term", {
  description: "The term of the mastership this server holds or follows",
})
/** @since 0.1.0 @category metrics */
export const epoch = Metric.gauge("understudy_staggered_election_epoch", {
  description: "The epoch (fencing token) of the mastership this server holds or follows",
})
/** @since 0.1.0 @category metrics */
export const serversInView = Metric.gauge("understudy_staggered_election_servers_in_view", {
  description: "Servers this server heard from within the inquiry time-out, itself included",
})
/** @since 0.1.0 @category metrics */
export const entriesAppended = Metric.counter(
  "understudy_staggered_election_entries_appended_total",
  { description: "Positions added to this server's log (a snapshot installed adds its own)" },
)
/** @since 0.1.0 @category metrics */
export const entriesCommitted = Metric.counter(
  "understudy_staggered_election_entries_committed_total",
  { description: "Positions of this server's log it learnt committed" },
)
/** @since 0.1.0 @category metrics */
export const replicationLagEntries = Metric.gauge(
  "understudy_staggered_election_replication_lag_entries",
  {
    description:
      "On the master, per backup: entries of its log the backup has not acknowledged (0 once this server is no longer master)",
  },
)
/** @since 0.1.0 @category metrics */
export const replicationBytes = Metric.counter(
  "understudy_staggered_election_replication_bytes_total",
  { description: "Bytes of replication messages (entries, heartbeats, snapshot chunks) sent" },
)
/** @since 0.1.0 @category metrics */
export const reads = Metric.counter("understudy_staggered_election_reads_total", {
  description: "Reads, by mode (index, lease, local) and outcome (answered, refused)",
})
/** @since 0.1.0 @category metrics */
export const leaseReads = Metric.counter("understudy_staggered_election_lease_reads_total", {
  description:
    "With reads: lease, reads the master took on, by lease (held: answered at once; not-held: a round of acknowledgements first)",
})
/** @since 0.1.0 @category metrics */
export const refusals = Metric.counter("understudy_staggered_election_refusals_total", {
  description:
    "Requests (op submit) and reads (op read) refused, by reason (not-master, no-majority, not-serving, not-ready, timeout, queue-full, ...)",
})

/** The label of a read mode: `linearizable` reads go by read index. */
export const readModeLabel = (mode: "linearizable" | "lease" | "local") =>
  mode === "linearizable" ? "index" : mode

type State = Machine.State<unknown, unknown, unknown>
type Step = Runner.StepInfo<
  State,
  Message.Message<unknown>,
  Machine.Command<unknown>,
  Machine.Event<unknown>
>

const roles: ReadonlyArray<Message.Role> = ["master", "backup", "waiting"]

/**
 * A log line's `role` and `term`: those `state` gives the server. Put on the lines that are
 * logged, not around every step (an annotation costs about half a microsecond).
 *
 * @since 0.1.0
 * @category logging
 */
export const annotate = (state: Pick<State, "role" | "epoch">) =>
  Effect.annotateLogs({ role: state.role, term: Machine.termOf(state.epoch) })

const count = (counter: typeof elections, attributes: Record<string, string>, by = 1) =>
  Metric.update(Metric.withAttributes(counter, attributes), by)

const observe = (histogram: typeof failoverMs, ms: number, attributes: Record<string, string>) =>
  Metric.update(Metric.withAttributes(histogram, attributes), Math.max(0, ms))

/** @since 0.1.0 @category models */
export interface Recorder {
  /** One step of the machine (after it was made durable, before its outputs are sent). */
  readonly step: (info: Step) => Effect.Effect<void>
  /** Registered in the name server at `epoch`: the takeover is done, this master serves. */
  readonly registered: (epoch: number, nowMs: number) => Effect.Effect<void>
  /** The name server holds a newer master than this one at `epoch`. */
  readonly fenced: (epoch: number) => Effect.Effect<void>
  /**
   * Each detection period: `peers` heard from within the inquiry time-out (this server left
   * out), a master's backups' lag, and the entries and bytes counted since the last one.
   */
  readonly tick: (state: State, peers: number) => Effect.Effect<void>
  /** Bytes of a replication message, as encoded for the wire (counted at the next `tick`). */
  readonly sent: (bytes: number) => void
  readonly read: (outcome: "answered" | "refused") => Effect.Effect<void>
  readonly refused: (op: "submit" | "read", reason: string) => Effect.Effect<void>
}

/**
 * Records one server's metrics and spans. `lastHeardMs(peer)` is when the driver last
 * received anything from `peer`; `readMode` labels the reads.
 *
 * @since 0.1.0
 * @category constructors
 */
export const recorder = (options: {
  readonly self: string
  /** The other servers of the group. */
  readonly backups: ReadonlyArray<string>
  readonly readMode: "linearizable" | "lease" | "local"
  readonly lastHeardMs: (peer: string) => number | undefined
}): Recorder => {
  const { self } = options
  const mode = readModeLabel(options.readMode)
  const gauge = (metric: typeof role, attributes: Record<string, string> = {}) =>
    Metric.withAttributes(metric, { server: self, ...attributes })
  let failover:
    | { readonly fromMs: number; readonly epoch: number; readonly span: Tracer.Span }
    | undefined
  let election: { readonly span: Tracer.Span } | undefined
  let takeover:
    | { readonly fromMs: number; readonly epoch: number; readonly span: Tracer.Span }
    | undefined
  // Labelled once: these are updated per read.
  const readsAnswered = Metric.withAttributes(reads, { mode, outcome: "answered" })
  const readsRefused = Metric.withAttributes(reads, { mode, outcome: "refused" })
  const leaseHeld = Metric.withAttributes(leaseReads, { lease: "held" })
  const leaseNotHeld = Metric.withAttributes(leaseReads, { lease: "not-held" })
  // Counted here per step and added to the counters each detection period (`tick`): a
  // counter's update costs about a microsecond, a step a few.
  let unsentBytes = 0
  let unsentAppended = 0
  let unsentCommitted = 0
  // The backups whose lag was last set above 0, to set back when this master steps down.
  let lagging = new Set<string>()

  const becameMaster = (epoch: number, nowMs: number, how: "declared" | "revoked") =>
    Effect.gen(function* () {
      if (takeover !== undefined) yield* Spans.end(takeover.span, { outcome: "superseded" })
      takeover = {
        fromMs: nowMs,
        epoch,
        span: yield* Effect.makeSpan("staggered-election.takeover", {
          attributes: { server: self, epoch, term: Machine.termOf(epoch), how },
        }),
      }
    })

  const endElection = (outcome: "won" | "lost", epoch: number) =>
    Effect.gen(function* () {
      if (election === undefined) return
      yield* Spans.end(election.span, { outcome, epoch, term: Machine.termOf(epoch) })
      election = undefined
    })

  const endFailover = (nowMs: number, role: "master" | "backup", master: string, epoch: number) =>
    Effect.gen(function* () {
      if (failover === undefined || epoch <= failover.epoch) return
      yield* observe(failoverMs, nowMs - failover.fromMs, { role })
      yield* Spans.end(failover.span, { outcome: "new-master", master, epoch })
      failover = undefined
    })

  /** In lease mode, a step of reads: those confirmed in it had the lease, the others wait for a round. */
  const leaseRead = Effect.fnUntraced(function* (input: Step["input"], outputs: Step["outputs"]) {
    if (input._tag !== "Command") return
    const command = input.command
    const asked =
      command._tag === "Read" ? 1 : command._tag === "ReadMany" ? command.readIds.length : 0
    if (asked === 0) return
    let held = 0
    let refused = 0
    for (const output of outputs) {
      if (output._tag !== "Emit") continue
      if (output.event._tag === "ReadConfirmed") held++
      else if (output.event._tag === "ReadRejected") refused++
    }
    if (held > 0) yield* Metric.update(leaseHeld, held)
    if (asked - held - refused > 0) yield* Metric.update(leaseNotHeld, asked - held - refused)
  })

  // Made once (`fnUntraced`), not a generator per step.
  const eventful = Effect.fnUntraced(function* ({ input, before, after, outputs, nowMs }: Step) {
    if (options.readMode === "lease") yield* leaseRead(input, outputs)
    for (const output of outputs) {
      if (output._tag !== "Emit") continue
      const event = output.event
      switch (event._tag) {
        case "Waiting": {
          if (before?.role !== "waiting") yield* count(elections, { outcome: "started" })
          if (election === undefined)
            election = {
              span: yield* Effect.makeSpan("staggered-election.election", {
                attributes: { server: self, failed: event.failed ?? "" },
              }),
            }
          const failed = event.failed
          if (failed === undefined || failover !== undefined) break
          const heardMs = options.lastHeardMs(failed) ?? nowMs
          yield* observe(detectionMs, nowMs - heardMs, {})
          const lostEpoch = before?.epoch ?? 0
          failover = {
            fromMs: heardMs,
            epoch: lostEpoch,
            span: yield* Effect.makeSpan("staggered-election.failover", {
              attributes: { server: self, lostMaster: failed, epoch: lostEpoch },
            }),
          }
          break
        }
        case "BecameMaster":
          yield* count(elections, { outcome: "won" })
          yield* endElection("won", event.epoch)
          yield* becameMaster(event.epoch, nowMs, "declared")
          break
        case "Revoked":
          yield* count(elections, { outcome: "revoked" })
          yield* becameMaster(event.epoch, nowMs, "revoked")
          break
        case "Acknowledged":
          if (before?.role === "waiting") {
            yield* count(elections, { outcome: "lost" })
            yield* endElection("lost", event.epoch)
          }
          yield* endFailover(nowMs, "backup", event.master, event.epoch)
          break
        case "MasterRecovered":
          // The master given up on answered at its epoch: it was only slow.
          if (before?.role === "waiting") {
            yield* count(elections, { outcome: "lost" })
            yield* endElection("lost", after.epoch)
          }
          if (failover !== undefined) {
            yield* Spans.end(failover.span, { outcome: "master-alive" })
            failover = undefined
          }
          break
        default:
          break
      }
    }

    // A master stepped down before serving: its takeover ended without one.
    if (takeover !== undefined && after.role !== "master") {
      yield* Spans.end(takeover.span, { outcome: "stepped-down" })
      takeover = undefined
    }
    if (before?.role !== after.role) {
      for (const r of roles)
        yield* Metric.update(gauge(role, { role: r }), r === after.role ? 1 : 0)
      if (before !== undefined)
        yield* Effect.logInfo(`role: ${before.role} -> ${after.role}`, {
          epoch: after.epoch,
          master: after.master,
        }).pipe(annotate(after))
      if (before?.role === "master") {
        for (const backup of lagging)
          yield* Metric.update(gauge(replicationLagEntries, { backup }), 0)
        lagging = new Set()
      }
    }
    if (before?.epoch !== after.epoch) {
      yield* Metric.update(gauge(term), Machine.termOf(after.epoch))
      yield* Metric.update(gauge(epoch), after.epoch)
      if (before !== undefined && Machine.termOf(before.epoch) !== Machine.termOf(after.epoch))
        yield* Effect.logInfo(
          `term: ${Machine.termOf(before.epoch)} -> ${Machine.termOf(after.epoch)}`,
          {
            epoch: after.epoch,
            master: after.master,
          },
        ).pipe(annotate(after))
    }
  })

  /**
   * Runs on every step of the node: the entry counts are sums, and the rest is looked at only
   * when the step emitted an event, changed the role or the epoch, or (lease) took reads.
   */
  const step = (info: Step): Effect.Effect<void> => {
    const { input, before, after, outputs } = info
    if (before !== undefined && before.replica !== after.replica) {
      const appended = Replication.lastSeq(after.replica) - Replication.lastSeq(before.replica)
      if (appended > 0) unsentAppended += appended
      const committed = after.replica.commitSeq - before.replica.commitSeq
      if (committed > 0) unsentCommitted += committed
    }
    const quiet =
      before !== undefined &&
      before.role === after.role &&
      before.epoch === after.epoch &&
      (options.readMode !== "lease" || input._tag !== "Command") &&
      !outputs.some((output) => output._tag === "Emit")
    return quiet ? Effect.void : eventful(info)
  }

  return {
    step,
    registered: (registeredEpoch, nowMs) =>
      Effect.gen(function* () {
        if (takeover !== undefined && takeover.epoch === registeredEpoch) {
          yield* observe(takeoverMs, nowMs - takeover.fromMs, {})
          yield* Spans.end(takeover.span, { outcome: "serving" })
          takeover = undefined
        }
        yield* endFailover(nowMs, "master", self, registeredEpoch)
      }),
    fenced: (fencedEpoch) =>
      Effect.gen(function* () {
        if (takeover === undefined || takeover.epoch !== fencedEpoch) return
        yield* Spans.end(takeover.span, { outcome: "fenced" })
        takeover = undefined
      }),
    tick: (state, peers) =>
      Effect.gen(function* () {
        for (const [counter, by] of [
          [replicationBytes, unsentBytes],
          [entriesAppended, unsentAppended],
          [entriesCommitted, unsentCommitted],
        ] as const)
          if (by > 0) yield* Metric.update(counter, by)
        unsentBytes = 0
        unsentAppended = 0
        unsentCommitted = 0
        yield* Metric.update(gauge(serversInView), peers + 1)
        if (state.role !== "master" || state.leader === undefined) return
        const lastSeq = Replication.lastSeq(state.replica)
        for (const backup of options.backups) {
          const lag = Math.max(0, lastSeq - (state.leader.matchSeq[backup] ?? 0))
          if (lag > 0) lagging.add(backup)
          yield* Metric.update(gauge(replicationLagEntries, { backup }), lag)
        }
      }),
    sent: (bytes) => {
      unsentBytes += bytes
    },
    read: (outcome) => Metric.update(outcome === "answered" ? readsAnswered : readsRefused, 1),
    refused: (op, reason) => count(refusals, { op, reason }),
  }
}
