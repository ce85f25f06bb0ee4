/**
 * The pool's metrics and spans, recorded from each step of a server's machine (the state
 * before and after, the events, the step's time): seats, clients, requests waiting for the
 * leader and the follower's share; refusals by reason; elections; and failovers, from the
 * last heartbeat heard of a lost leader to the next leader this server knows, with the
 * detection part (to the check message) on its own. Each election and each failover is also
 * a span (`heartbeat-pool.election`, `heartbeat-pool.failover`), ended when its outcome is
 * known.
 *
 * @since 0.1.0
 */
import { Spans } from "@understudy/machine"
import { Effect, HashMap, Metric, type Tracer } from "effect"
import * as Machine from "./Machine.ts"

/** @since 0.1.0 @category metrics */
export const seatsInUse = Metric.gauge("understudy_pool_seats_in_use", {
  description:
    "Seats held at this server (the leader: in the whole pool too, scope=pool), those that expired until the next heartbeat interval",
})
/** @since 0.1.0 @category metrics */
export const seatsFree = Metric.gauge("understudy_pool_seats_free", {
  description: "Seats of the license the leader can still grant",
})
/** @since 0.1.0 @category metrics */
export const shareSeats = Metric.gauge("understudy_pool_share_seats", {
  description: "Seats a follower may still grant from its share without asking the leader",
})
/** @since 0.1.0 @category metrics */
export const requestsWaiting = Metric.gauge("understudy_pool_requests_waiting", {
  description: "A follower's requests waiting for the leader's answer",
})
/** @since 0.1.0 @category metrics */
export const clients = Metric.gauge("understudy_pool_clients", {
  description: "Clients in this server's record",
})
/** @since 0.1.0 @category metrics */
export const refusals = Metric.counter("understudy_pool_refusals_total", {
  description: "Requests refused, by reason (capacity, no-leader, limit, ...)",
})
/** @since 0.1.0 @category metrics */
export const elections = Metric.counter("understudy_pool_elections_total", {
  description: "Elections this server stood in, by outcome (started, won)",
})
/** @since 0.1.0 @category metrics */
export const electionMs = Metric.histogram("understudy_pool_election_ms", {
  description: "From standing for election to knowing the outcome, in ms, by outcome (won, lost)",
  boundaries: Metric.exponentialBoundaries({ start: 1, factor: 2, count: 16 }),
})
/** @since 0.1.0 @category metrics */
export const failoverMs = Metric.histogram("understudy_pool_failover_ms", {
  description:
    "From the last heartbeat heard of a lost leader to the next leader this server knows, in ms, by role (leader, follower)",
  boundaries: Metric.exponentialBoundaries({ start: 1, factor: 2, count: 16 }),
})
/** @since 0.1.0 @category metrics */
export const detectionMs = Metric.histogram("understudy_pool_detection_ms", {
  description:
    "From the last message heard of a server to its loss being noticed, in ms, by whom was lost (leader: the check message; follower: marked down)",
  boundaries: Metric.exponentialBoundaries({ start: 1, factor: 2, count: 16 }),
})
/** @since 0.1.0 @category metrics */
export const clientHeartbeats = Metric.counter("understudy_pool_client_heartbeats_total", {
  description: "Client heartbeats received",
})
/**
 * Client datagrams dropped before the machine saw them, by `reason`: `too-large`,
 * `unauthenticated` (no MAC of the pool key), `undecodable`, `replayed`, `stale`, `future`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const clientDatagramsDropped = Metric.counter(
  "understudy_pool_client_datagrams_dropped_total",
  {
    description: "Client datagrams dropped before the machine saw them, by reason",
  },
)

/** One step of a server's machine, as the `Runner`'s `onStep` sees it. */
interface Step {
  readonly before: Machine.State | undefined
  readonly after: Machine.State
  readonly outputs: ReadonlyArray<{ readonly _tag: string; readonly event?: unknown }>
  readonly nowMs: number
}

const observe = (histogram: typeof failoverMs, attributes: Record<string, string>, ms: number) =>
  Metric.update(Metric.withAttributes(histogram, attributes), Math.max(0, ms))

/**
 * Records the metrics and spans of one server's steps. It remembers an open failover (a check
 * message sent: the leader may be lost) and an open election until their outcome.
 *
 * @since 0.1.0
 * @category constructors
 */
export const recorder = (self: string) => {
  const gauge = (metric: typeof clients) => Metric.withAttributes(metric, { server: self })
  let failover:
    | { readonly fromMs: number; readonly term: number; readonly span: Tracer.Span }
    | undefined
  let election: { readonly fromMs: number; readonly span: Tracer.Span } | undefined
  /** The seat gauges' last values (-1: none yet), updated only when they change. */
  const seats = { server: -1, pool: -1, free: -1 }

  return ({ before, after, outputs, nowMs }: Step): Effect.Effect<void> =>
    Effect.gen(function* () {
      for (const output of outputs) {
        if (output._tag !== "Emit") continue
        const event = output.event as Machine.Event
        if (event._tag === "Refused")
          yield* Metric.update(Metric.withAttributes(refusals, { reason: event.reason }), 1)
        else if (event._tag === "ElectionStarted")
          yield* Metric.update(Metric.withAttributes(elections, { outcome: "started" }), 1)
        else if (event._tag === "BecameLeader")
          yield* Metric.update(Metric.withAttributes(elections, { outcome: "won" }), 1)
        else if (event._tag === "FollowerDown") {
          const view = before?.leaderState?.followers[event.server]
          if (view !== undefined)
            yield* observe(detectionMs, { lost: "follower" }, nowMs - view.lastAckMs)
        }
      }

      // The failover opens when a check message goes out (the leader may be lost: detection),
      // or when a newer term comes while this server followed a leader (another noticed first).
      const checked =
        before !== undefined && before.checkSentMs === undefined && after.checkSentMs !== undefined
      const overtaken =
        before !== undefined &&
        before.role === "follower" &&
        before.leader !== undefined &&
        after.durable.term > before.durable.term
      if (before !== undefined && (checked || overtaken) && failover === undefined) {
        if (checked)
          yield* observe(detectionMs, { lost: "leader" }, nowMs - before.lastLeaderHeardMs)
        failover = {
          fromMs: before.lastLeaderHeardMs,
          term: before.durable.term,
          span: yield* Effect.makeSpan("heartbeat-pool.failover", {
            attributes: { server: self, term: before.durable.term, lostLeader: before.leader },
          }),
        }
      }
      if (after.role === "candidate" && before?.role !== "candidate" && election === undefined) {
        election = {
          fromMs: nowMs,
          span: yield* Effect.makeSpan("heartbeat-pool.election", {
            attributes: { server: self, term: after.durable.term },
          }),
        }
      }
      const knowsLeader =
        after.role === "leader" || (after.role === "follower" && after.leader !== undefined)
      if (election !== undefined && after.role !== "candidate") {
        const outcome = after.role === "leader" ? "won" : "lost"
        yield* observe(electionMs, { outcome }, nowMs - election.fromMs)
        yield* Spans.end(election.span, { outcome, term: after.durable.term })
        election = undefined
      }
      if (failover !== undefined && knowsLeader) {
        const { fromMs, term, span } = failover
        if (after.durable.term > term) {
          yield* observe(failoverMs, { role: after.role }, nowMs - fromMs)
          yield* Spans.end(span, {
            outcome: "new-leader",
            leader: after.leader ?? self,
            term: after.durable.term,
          })
          failover = undefined
        } else if (after.checkSentMs === undefined) {
          // The check was answered: the leader was alive after all.
          yield* Spans.end(span, { outcome: "leader-alive" })
          failover = undefined
        }
      }

      if (before === undefined || HashMap.size(before.record) !== HashMap.size(after.record))
        yield* Metric.update(gauge(clients), HashMap.size(after.record))
      if (before === undefined || HashMap.size(before.pending) !== HashMap.size(after.pending))
        yield* Metric.update(gauge(requestsWaiting), HashMap.size(after.pending))
      const share = Machine.shareLeft(after, nowMs)
      const shareBefore = before === undefined ? -1 : Machine.shareLeft(before, nowMs)
      if (share !== shareBefore) yield* Metric.update(gauge(shareSeats), share)

      // The seats from the sums the machine keeps with each change: O(1) a step, where counting
      // the record and the pool's allocations was O(clients) for every step that changed one.
      if (after.recordSeats !== seats.server) {
        seats.server = after.recordSeats
        yield* Metric.update(
          Metric.withAttributes(seatsInUse, { server: self, scope: "server" }),
          seats.server,
        )
      }
      const tally = after.leaderState?.tally
      if (tally !== undefined) {
        const free = Math.max(0, Machine.capacityAt(after, nowMs) - tally.total)
        if (tally.total !== seats.pool) {
          seats.pool = tally.total
          yield* Metric.update(
            Metric.withAttributes(seatsInUse, { server: self, scope: "pool" }),
            seats.pool,
          )
        }
        if (free !== seats.free) {
          seats.free = free
          yield* Metric.update(gauge(seatsFree), free)
        }
      }
    })
}
