/**
 * The driver of the staggered election (seed 003): runs one server's `Machine` with the
 * `Runner` over the `Datagram` service and the `Clock`, registers its mastership in the
 * `NameServer` (claim 27) and serves client requests by active replication (claim 1).
 *
 * Epochs and the name server: whenever this server becomes master at an epoch (a
 * declaration, or a revoke), it registers `(group, holder, epoch)` with compare-and-set.
 * The name server keeps the highest epoch ever registered, so a master it has replaced can
 * never register again: when registration fails with `StaleEpoch`, or the registration is
 * later superseded by a newer epoch, this server is *fenced*: it stops answering (every
 * waiting and later `submit` fails with `NotMaster`, naming the name server's holder) and
 * reports `MasterLost`. The machine itself has no "step down" input; it steps down when it
 * hears the newer master's epoch from its peers (a probe or a declaration), which normally
 * happens within one detection period. Until then a fenced master never answers a client,
 * so clients are never served by a master the name server has replaced.
 *
 * A master answers only while its registration is held: between becoming master and the
 * registration (one or two store round trips) requests are accepted and replicated, and
 * their answers wait for the registration, bounded by `submitTimeout`.
 *
 * Exactly-once: a request carries its client's id and a request id that increases per
 * client; a retry with the same ids is answered from the replicated table of last answers
 * instead of being applied again. A client must have at most one request outstanding (a
 * later id applied first makes an earlier one `stale-request`): `Client` does that.
 *
 * The user's state machine is `apply(state, request) → [state, result]`, a plain function
 * or an Effect. The machine applies committed entries inside its pure `step`, on every
 * server, in log order, synchronously, so an Effect form must be synchronous and need no
 * services (validation with `Schema`, `Effect.fail` for a refused request as a defect...):
 * it is run with `Effect.runSync`, and an asynchronous one is a defect that stops the node.
 * It must be deterministic like the plain form. Do I/O and notifications on the answer.
 *
 * Observability: the driver records `Metrics` from each step of the machine, from the
 * registrations and from the answers to clients (the machine stays pure); its log lines
 * carry the server (`node`), `group`, and the `role` and `term` of the step that logged them.
 *
 * @since 0.1.0
 */
import { type Authentication, Runner } from "@understudy/machine"
import { NameServer } from "@understudy/store"
import {
  type Address,
  type Datagram,
  type TransportError,
  Options as TransportOptions,
} from "@understudy/transport"
import {
  Clock,
  Context,
  Deferred,
  type Duration,
  Effect,
  Exit,
  Layer,
  Option,
  PubSub,
  Queue,
  Result,
  Schedule,
  Schema,
  Scope,
  Stream,
} from "effect"
import type * as Delays from "./Delays.ts"
import * as Durable from "./Durable.ts"
import * as Machine from "./Machine.ts"
import * as Message from "./Message.ts"
import * as Metrics from "./Metrics.ts"
import * as Replication from "./Replication.ts"
import type * as Wal from "./Wal.ts"

/**
 * This server is not the master that answers: `master` is the server it believes is (the
 * name server's holder when it was fenced), `null` when it knows of none. Redirect there.
 *
 * @since 0.1.0
 * @category errors
 */
export class NotMaster extends Schema.TaggedError<NotMaster>()("NotMaster", {
  master: Schema.NullOr(Schema.String),
}) {
  override get message(): string {
    return this.master === null
      ? "not the master; no master known"
      : `not the master; try ${this.master}`
  }
}

/**
 * The master refused the request: its log or its queue is full, or the client already had
 * a later request applied (`stale-request`: a client must not have two requests outstanding).
 *
 * @since 0.1.0
 * @category errors
 */
export class Rejected extends Schema.TaggedError<Rejected>()("Rejected", {
  reason: Schema.Literals(["queue-full", "log-full", "stale-request"]),
}) {
  override get message(): string {
    return `request rejected: ${this.reason}`
  }
}

/**
 * No answer in time (the request may still be applied: retry it with the same ids), or the
 * server stopped.
 *
 * @since 0.1.0
 * @category errors
 */
export class GroupUnavailable extends Schema.TaggedError<GroupUnavailable>()("GroupUnavailable", {
  reason: Schema.String,
}) {
  override get message(): string {
    return `server group unavailable: ${this.reason}`
  }
}

/** @since 0.1.0 @category errors */
export type SubmitError = NotMaster | Rejected | GroupUnavailable

/** A client's request with its exactly-once ids. @since 0.1.0 @category models */
export interface Submission<Req> {
  readonly clientId: string
  /** Increasing per client; a retry reuses it. */
  readonly requestId: number
  readonly request: Req
}

/**
 * The Effect form of the replicated state machine: synchronous, no services (see above).
 *
 * @since 0.1.0
 * @category models
 */
export type ApplyEffect<S, Req, Res> = (state: S, request: Req) => Effect.Effect<readonly [S, Res]>

/** Either form as the plain function the machine steps with. */
const plainApply =
  <S, Req, Res>(apply: Replication.Apply<S, Req, Res> | ApplyEffect<S, Req, Res>) =>
  (state: S, request: Req): readonly [S, Res] => {
    const result = apply(state, request)
    return Effect.isEffect(result) ? Effect.runSync(result) : result
  }

/**
 * How `read` answers (see `Options.reads`), as decoded from a configuration.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ReadMode = Schema.Literals(["linearizable", "lease", "local"])
/** @since 0.1.0 @category models */
export type ReadMode = typeof ReadMode.Type

/**
 * The leader lease of `reads: "lease"` (see `Machine.Config.lease`), as decoded from a
 * configuration: a positive duration, and a drift bound in [0, 0.5).
 *
 * @since 0.1.0
 * @category schemas
 */
export const LeaseConfig = Schema.Struct({
  duration: Schema.optionalKey(TransportOptions.PositiveDuration),
  clockDriftMax: Schema.optionalKey(
    Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0), Schema.isLessThan(0.5)),
  ),
})

/** The options `make` decodes before anything is opened or bound: the timings and reads. */
const Settings = Schema.Struct({
  detectionPeriod: TransportOptions.PositiveDuration,
  inquiryTimeout: TransportOptions.PositiveDuration,
  baseDelay: TransportOptions.PositiveDuration,
  floorDelay: Schema.optionalKey(TransportOptions.PositiveDuration),
  unknownDelay: Schema.optionalKey(TransportOptions.PositiveDuration),
  submitTimeout: Schema.optionalKey(TransportOptions.PositiveDuration),
  registrationTtl: Schema.optionalKey(TransportOptions.PositiveDuration),
  reads: Schema.optionalKey(ReadMode),
  lease: Schema.optionalKey(LeaseConfig),
})

const decodeSettings = Schema.decodeUnknownResult(Settings)

/** The machine's timings, which the driver takes as durations and gives it in milliseconds. */
type Timings =
  | "detectionPeriodMs"
  | "inquiryTimeoutMs"
  | "baseDelayMs"
  | "floorDelayMs"
  | "unknownDelayMs"
  | "lease"

/** @since 0.1.0 @category models */
export interface Options<S, Req, Res>
  extends Omit<Machine.Config<S, Req, Res>, "initial" | "apply" | Timings> {
  /**
   * The equally periodic detection timer: probes (and inquiries) go out this often
   * (`"50 millis"`, a number of milliseconds, a `Duration`).
   */
  readonly detectionPeriod: Duration.Input
  /** An inquiry unanswered for this long means the master failed. */
  readonly inquiryTimeout: Duration.Input
  /**
   * The base of every election delay; must exceed a round trip (a restarted server hears the
   * group first).
   */
  readonly baseDelay: Duration.Input
  /** Every measured delay counts as at least this. Default 1 ms. */
  readonly floorDelay?: Duration.Input
  /** The delay of a pair nobody measured yet. Default `inquiryTimeout`. */
  readonly unknownDelay?: Duration.Input
  /**
   * The leader lease of `reads: "lease"` (see `Machine.Config.lease`): how long a majority's
   * ack of a round lets the master read alone (default: the longest whose wait is
   * `inquiryTimeout`), and the bound on any clock's rate error (default 0.01).
   */
  readonly lease?: { readonly duration?: Duration.Input; readonly clockDriftMax?: number }
  /** The role registered in the name server: the group's name. */
  readonly group: string
  /** This server's id, one of `servers`. */
  readonly self: string
  /** Where every server (this one included) receives its datagrams. */
  readonly addresses: Readonly<Record<string, Address.Udp>>
  /**
   * `Authentication.keyed(clusterKey)`, the same on every server, or the explicit
   * `Authentication.insecure` (any datagram from a member's address is believed).
   */
  readonly authentication: Authentication.Authentication
  /** The wire schema of requests (they are replicated as JSON). */
  readonly request: Schema.Codec<Req, unknown>
  readonly initial: S
  /** Pure and deterministic: the same on every server. */
  readonly apply: Replication.Apply<S, Req, Res> | ApplyEffect<S, Req, Res>
  /**
   * What clients can reach this server at, registered with its id as `id=advertise` (see
   * `parseHolder`), e.g. an HTTP URL. Default: nothing, the holder is the id.
   */
  readonly advertise?: string
  /**
   * Lease TTL of the registration: how long a dead master stays registered (`"2 seconds"`,
   * or milliseconds). Default 2 seconds.
   */
  readonly registrationTtl?: Duration.Input
  /** Longest a `submit` (or a read) waits for its answer. Default 5 seconds. */
  readonly submitTimeout?: Duration.Input
  /**
   * Attempts to register one epoch while the store is unavailable, after which the requests
   * waiting for it fail with `GroupUnavailable`; registering goes on (every 500 ms) for as long as
   * this server is master at that epoch, so a name server back after an outage finds it
   * again. Default 20.
   */
  readonly registerAttemptsMax?: number
  /** Events kept for a slow `events` reader; older ones are dropped. Default 1,024. */
  readonly eventsCapacity?: number
  /**
   * How `read` answers. `"linearizable"` (default): by read index — the master answers once a
   * majority acknowledged a heartbeat round begun after the read arrived (one round trip to
   * the fastest majority; reads that arrive together share a round). A master paused or cut
   * off while the others elected a new one never answers from its old state. `"local"`: at
   * once, from the state applied here, if this server believes it is the registered master —
   * no round trip, but a master paused past the time-outs and resumed answers with what it
   * had (stale) until it hears of its successor, typically within one detection period.
   * `"lease"`: linearizable too, by a leader lease (`lease`, see `Machine.Config.lease`) —
   * reads are answered at once while a majority acknowledged a heartbeat within the lease,
   * with no round trip; the price is a bound on clock drift (`lease.clockDriftMax`) that
   * the safety rests on, and a new master that waits out its predecessor's lease before
   * answering anything (normally already over by the end of the election).
   */
  readonly reads?: ReadMode
  /**
   * The write-ahead log file of this server (see `Durable`): every change of its term,
   * promise and log is appended and fsynced before the messages that reveal it are sent and
   * before a client is answered, and a restart recovers them, so the restarted server counts
   * towards majorities at once and the whole group may restart without losing a write.
   * Absent: nothing is persisted (a restart is amnesiac). A damaged log fails the start
   * (`ElectionWalCorrupt`); a failing disk stops the server (a defect).
   */
  readonly walFile?: string
}

/**
 * What the driver reports. `MasterLost` says the master this server knew (itself included)
 * is gone: `unreachable` (its inquiry went unanswered), `demoted` (this master accepted a
 * more capable one), `superseded` (the name server holds a newer epoch: fenced),
 * `unregistered` (this master's registration lapsed — no keep-alive reached the name server
 * for a TTL — it stops answering until registered again), `no-majority` (no majority of the
 * group acknowledged this master within the inquiry time-out: it stops answering until one
 * does; `MajorityRegained` then).
 *
 * @since 0.1.0
 * @category models
 */
export type Event =
  | { readonly _tag: "BecameMaster"; readonly epoch: number; readonly atMs: number }
  | {
      readonly _tag: "MasterLost"
      readonly master: string
      readonly reason: "unreachable" | "demoted" | "superseded" | "unregistered" | "no-majority"
      readonly epoch: number
      readonly atMs: number
    }
  | {
      readonly _tag: "Waiting"
      readonly failed: string | undefined
      readonly delayMs: number
      readonly explain: string
      readonly atMs: number
    }
  | {
      readonly _tag: "Revoked"
      readonly revokedIndex: number
      readonly epoch: number
      readonly atMs: number
    }
  | {
      readonly _tag: "Acknowledged"
      readonly master: string
      readonly epoch: number
      readonly atMs: number
    }
  | { readonly _tag: "Registered"; readonly epoch: number; readonly atMs: number }
  | { readonly _tag: "MajorityRegained"; readonly epoch: number; readonly atMs: number }
  | {
      readonly _tag: "MembershipChanged"
      readonly live: ReadonlyArray<string>
      readonly joined: ReadonlyArray<string>
      readonly lost: ReadonlyArray<string>
      readonly atMs: number
    }

/** A snapshot of one server. @since 0.1.0 @category models */
export interface Status {
  readonly self: string
  readonly index: number
  readonly role: "master" | "backup" | "waiting"
  readonly epoch: number
  readonly term: number
  readonly master: string | null
  /** Registered in the name server at this epoch and not fenced: it answers clients. */
  readonly serving: boolean
  /** A master the name server replaced: the holder it found there. */
  readonly fencedBy: string | null
  /** A master that has committed an entry of its own epoch: everything earlier is applied. */
  readonly ready: boolean
  readonly lastSeq: number
  readonly commitSeq: number
  readonly appliedSeq: number
  /** The current election delay when waiting. */
  readonly electionDelayMs: number | null
  /** The election delay this server would wait now, with its terms. */
  readonly delays: string
  /** Peers heard from within the inquiry time-out. */
  readonly live: ReadonlyArray<string>
}

/** @since 0.1.0 @category models */
export interface ServerGroup<S, Req, Res> {
  readonly self: string
  readonly address: Address.Udp
  /**
   * Applies a request once, through the master, and gives its result. Fails with
   * `NotMaster` on any server but the registered master; retry a `GroupUnavailable` with the
   * same ids.
   */
  readonly submit: (submission: Submission<Req>) => Effect.Effect<Res, SubmitError>
  readonly status: Effect.Effect<Status>
  /** The events from the moment the stream starts. */
  readonly events: Stream.Stream<Event>
  readonly explainDelays: () => Effect.Effect<Delays.Explanation>
  /** The machine's state, for tests and observers. */
  readonly machineState: Effect.Effect<Machine.State<S, Req, Res>>
  /** The replicated state as applied here. */
  readonly applied: Effect.Effect<S>
  /**
   * The replicated state, as of a moment between the call and its answer (see
   * `Options.reads`): every write answered before the call is in it. Fails with `NotMaster`
   * on any server but the master, and `GroupUnavailable` when no majority confirms in time.
   */
  readonly read: Effect.Effect<S, NotMaster | GroupUnavailable>
}

/**
 * The service, for programs that provide it with `layer`. Its requests and results are
 * `unknown`; code that wants them typed uses `make` directly.
 *
 * @since 0.1.0
 * @category services
 */
export class ServerGroupService extends Context.Service<
  ServerGroupService,
  ServerGroup<unknown, unknown, unknown>
>()("@understudy/staggered-election/ServerGroup") {}

/** A `GroupUnavailable`'s reason, as the `reason` label of `Metrics.refusals` names it. */
const unavailableReasons: ReadonlyArray<readonly [text: string, label: string]> = [
  ["no answer within", "timeout"],
  ["no majority confirmed", "no-majority"],
  ["not serving", "not-serving"],
  ["the name server is unreachable", "no-name-server"],
  ["the server stopped", "stopped"],
]

/** The `reason` label of a refused submit or read (see `Metrics.refusals`). */
const refusalReason = (error: SubmitError): string => {
  if (error._tag === "NotMaster") return "not-master"
  if (error._tag === "Rejected") return error.reason
  const refused = /^read refused: (.+)$/.exec(error.reason)
  if (refused !== null) return refused[1]!
  return unavailableReasons.find(([text]) => error.reason.startsWith(text))?.[1] ?? "unavailable"
}

/** Requests given to the machine in one step, at most (a bound on a step's work). */
const submitBatchMax = 256
/** Masterships waiting for the registration worker, at most (see `jobs`). */
const jobsMax = 64

/** Requests (or reads) waiting for the next step, at most; more wait to be queued. */
const batchQueueMax = 4 * submitBatchMax

/** A registered holder: `id`, or `id=advertise`. @since 0.1.0 @category models */
export interface Holder {
  readonly id: string
  readonly advertise: string | undefined
}

/**
 * Splits a name-server holder into the server id and what it advertised.
 *
 * @since 0.1.0
 * @category getters
 */
export const parseHolder = (holder: string): Holder => {
  const equals = holder.indexOf("=")
  return equals < 0
    ? { id: holder, advertise: undefined }
    : { id: holder.slice(0, equals), advertise: holder.slice(equals + 1) }
}

interface Mastership {
  readonly epoch: number
  status: "registering" | "registered" | "fenced" | "abandoned"
  /** Completes when registered; fails when fenced or abandoned. Replaced on re-registration. */
  ready: Deferred.Deferred<void, NotMaster>
  fencedBy: string | undefined
  scope: Scope.Closeable | undefined
}

type Answer<Res> = { readonly result: Res }

const keyOf = (clientId: string, requestId: number) => `${requestId}/${clientId}`

/**
 * Starts this server: binds its UDP endpoint, runs the election and replication, keeps its
 * registration in the name server while it is master. Everything stops when the scope
 * closes (a master's registration is revoked then).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <S, Req, Res>(
  options: Options<S, Req, Res>,
): Effect.Effect<
  ServerGroup<S, Req, Res>,
  TransportError.ListenError | Machine.InvalidConfig | Wal.WalCorrupt | Wal.WalFailed,
  Datagram.Datagram | NameServer.NameServer | Scope.Scope
> =>
  Effect.gen(function* () {
    const decoded = decodeSettings(options)
    if (Result.isFailure(decoded)) {
      return yield* new Machine.InvalidConfig({ reason: decoded.failure.message })
    }
    const settings = decoded.success
    const readMode = settings.reads ?? "linearizable"
    if (settings.lease !== undefined && readMode !== "lease") {
      return yield* new Machine.InvalidConfig({ reason: `lease is set, reads is "${readMode}"` })
    }
    const millis = TransportOptions.toMillis
    const lease = settings.lease ?? {}
    const { lease: _, ...withoutLease } = options
    const checked: Machine.Config<S, Req, Res> = {
      ...withoutLease,
      apply: plainApply(options.apply),
      detectionPeriodMs: millis(settings.detectionPeriod),
      inquiryTimeoutMs: millis(settings.inquiryTimeout),
      baseDelayMs: millis(settings.baseDelay),
      ...(settings.floorDelay === undefined ? {} : { floorDelayMs: millis(settings.floorDelay) }),
      ...(settings.unknownDelay === undefined
        ? {}
        : { unknownDelayMs: millis(settings.unknownDelay) }),
      ...(readMode === "lease"
        ? {
            lease: {
              ...(lease.duration === undefined ? {} : { durationMs: millis(lease.duration) }),
              ...(lease.clockDriftMax === undefined ? {} : { clockDriftMax: lease.clockDriftMax }),
            },
          }
        : {}),
    }
    const invalid = Machine.validate(checked)
    if (invalid !== undefined) {
      return yield* new Machine.InvalidConfig({ reason: invalid.message })
    }
    if (!options.servers.some((server) => server.id === options.self)) {
      return yield* new Machine.InvalidConfig({
        reason: `${options.self} is not a configured server`,
      })
    }
    // Only a valid configuration opens (or creates) the write-ahead log.
    const durable =
      options.walFile === undefined
        ? undefined
        : yield* Durable.open<Req, S, Res>(
            options.walFile,
            options.request,
            undefined,
            options.snapshot,
          )
    const config: Machine.Config<S, Req, Res> =
      durable === undefined ? checked : { ...checked, restored: durable.recovered }
    const nameServer = yield* NameServer.NameServer
    const { self, group } = options
    const holderName = options.advertise === undefined ? self : `${self}=${options.advertise}`
    const submitTimeoutMs = millis(settings.submitTimeout ?? 5_000)
    const ttlMs = millis(settings.registrationTtl ?? 2_000)
    const registerAttemptsMax = options.registerAttemptsMax ?? 20
    const machine = Machine.make<S, Req, Res>(config)
    const events = yield* PubSub.sliding<Event>(options.eventsCapacity ?? 1_024)
    // Masterships to register or give up, in order. Bounded: each mastership change adds at
    // most two, and the worker leaves a superseded one at its next attempt (at most 500 ms
    // apart), so it fills only if dozens of elections came within one store call; then a
    // full queue holds the node's next step back until the worker takes one.
    const jobs = yield* Queue.bounded<Mastership>(jobsMax)

    let latest: Machine.State<S, Req, Res> | undefined
    let mastership: Mastership | undefined
    const pending = new Map<string, Array<Deferred.Deferred<Answer<Res>, SubmitError>>>()
    const lastHeardMs = new Map<string, number>()
    let live: ReadonlyArray<string> = []
    const reads = new Map<number, Deferred.Deferred<S, NotMaster | GroupUnavailable>>()
    let readSeq = 0
    let majority = false
    const metrics = Metrics.recorder({
      self,
      backups: options.servers.map((server) => server.id).filter((id) => id !== self),
      readMode,
      lastHeardMs: (peer) => lastHeardMs.get(peer),
    })

    /** A majority (this master included) acknowledged it within the inquiry time-out. */
    const holdsMajority = (state: Machine.State<S, Req, Res>, nowMs: number) => {
      const leader = state.leader
      if (state.role !== "master" || leader === undefined) return false
      let holders = 1
      for (const peer in leader.ackedMs) {
        if (nowMs - leader.ackedMs[peer]! <= config.inquiryTimeoutMs && !leader.amnesiacs[peer])
          holders++
      }
      return holders * 2 > options.servers.length
    }

    const publish = (event: Event) => PubSub.publish(events, event)

    const failAll = (error: SubmitError) =>
      Effect.gen(function* () {
        const waiting = [...pending.values()].flat()
        pending.clear()
        for (const deferred of waiting) yield* Deferred.fail(deferred, error)
      })

    const settle = (key: string, exit: Exit.Exit<Answer<Res>, SubmitError>) =>
      Effect.gen(function* () {
        const waiting = pending.get(key)
        if (waiting === undefined) return
        pending.delete(key)
        for (const deferred of waiting) yield* Deferred.done(deferred, exit)
      })

    /** Fenced: the name server holds a newer epoch than this master's. */
    const fence = (m: Mastership, by: string, nowMs: number) =>
      Effect.gen(function* () {
        if (m.status === "fenced") return
        m.status = "fenced"
        m.fencedBy = by
        const master = parseHolder(by).id
        yield* Deferred.fail(m.ready, new NotMaster({ master }))
        yield* failAll(new NotMaster({ master }))
        yield* Effect.logWarning("fenced: the name server holds a newer master", {
          group,
          epoch: m.epoch,
          by,
        })
        yield* metrics.fenced(m.epoch)
        yield* publish({
          _tag: "MasterLost",
          master: self,
          reason: "superseded",
          epoch: m.epoch,
          atMs: nowMs,
        })
      })

    const closeRegistration = (m: Mastership) =>
      Effect.suspend(() => {
        const scope = m.scope
        m.scope = undefined
        return scope === undefined ? Effect.void : Scope.close(scope, Exit.void)
      })

    /** Between registration attempts while the store is unavailable: 50 ms doubling, at most 500 ms apart. */
    const registerRetry = Schedule.min([Schedule.exponential(50), Schedule.spaced(500)])

    /** Registers `m` (retrying while the store is unavailable) and watches for its loss. */
    const register = (m: Mastership): Effect.Effect<void> => {
      let attempt = 0
      /** One attempt: fails (to be retried) only while the store is unavailable. */
      const once = Effect.gen(function* () {
        // Bounded by the mastership: it ends when this server leaves the epoch or is fenced.
        if (mastership !== m || m.status !== "registering") return
        if (attempt++ === registerAttemptsMax) {
          yield* Effect.logWarning("the name server is unreachable; still registering", {
            group,
            epoch: m.epoch,
          })
          yield* failAll(new GroupUnavailable({ reason: "the name server is unreachable" }))
        }
        const scope = yield* Scope.make()
        const outcome = yield* nameServer
          .register(group, holderName, m.epoch, { ttl: ttlMs })
          .pipe(Scope.provide(scope), Effect.result)
        const nowMs = yield* Clock.currentTimeMillis
        if (outcome._tag === "Success") {
          if (mastership !== m || m.status !== "registering") {
            yield* Scope.close(scope, Exit.void)
            return
          }
          m.scope = scope
          m.status = "registered"
          yield* Deferred.succeed(m.ready, undefined)
          yield* Effect.logInfo("registered as master", { group, epoch: m.epoch })
          yield* metrics.registered(m.epoch, nowMs)
          yield* publish({ _tag: "Registered", epoch: m.epoch, atMs: nowMs })
          const lost = outcome.success.lost
          yield* Effect.forkIn(
            Effect.gen(function* () {
              const why = yield* lost
              const atMs = yield* Clock.currentTimeMillis
              if (mastership !== m || m.status !== "registered") return
              if (why._tag === "Superseded" && Option.isSome(why.by)) {
                const by = why.by.value
                if (by.epoch > m.epoch || (by.epoch === m.epoch && by.holder !== holderName)) {
                  yield* fence(m, by.holder, atMs)
                  return
                }
              }
              // The lease ran out (the store was slow or away): stop answering, register again.
              yield* Effect.logWarning("registration lost; registering again", {
                group,
                epoch: m.epoch,
                why: why._tag,
              })
              yield* publish({
                _tag: "MasterLost",
                master: self,
                reason: "unregistered",
                epoch: m.epoch,
                atMs,
              })
              m.status = "registering"
              m.ready = yield* Deferred.make<void, NotMaster>()
              yield* Queue.offer(jobs, m)
            }),
            scope,
          )
          return
        }
        yield* Scope.close(scope, Exit.void)
        const error = outcome.failure
        if (error._tag === "StaleEpoch") {
          yield* fence(m, error.currentHolder, nowMs)
          return
        }
        yield* Effect.logWarning("cannot register yet", {
          group,
          epoch: m.epoch,
          error: error.message,
        })
        return yield* Effect.fail(error)
      })
      // Retried while this server is master at `m`'s epoch: once it left it, the store's
      // last error (logged above) concerns nobody any more.
      return once.pipe(
        Effect.retry({
          schedule: registerRetry,
          while: () => mastership === m && m.status === "registering",
        }),
        Effect.ignore,
        Effect.withSpan("staggered-election.register", {
          attributes: { server: self, epoch: m.epoch, term: Machine.termOf(m.epoch) },
        }),
        Metrics.annotate({ role: "master", epoch: m.epoch }),
      )
    }

    // One registration at a time, in the order masterships began.
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.gen(function* () {
          const m = yield* Queue.take(jobs)
          if (mastership !== m) {
            yield* closeRegistration(m)
            return
          }
          yield* closeRegistration(m)
          yield* register(m)
        }),
      ),
    )

    /** Everything the node does passes here, in order, inside its serial loop. */
    const onStep = (
      info: Runner.StepInfo<
        Machine.State<S, Req, Res>,
        Message.Message<Req>,
        Machine.Command<Req>,
        Machine.Event<Res>
      >,
    ) =>
      Effect.gen(function* () {
        const before = info.before
        const after = info.after
        // Before any output of this step is performed or any client answered (see `Durable`).
        if (durable !== undefined && before !== undefined) {
          yield* Effect.orDie(durable.persist(Durable.of(after)))
        }
        latest = after
        const nowMs = info.nowMs
        if (info.input._tag === "Receive") lastHeardMs.set(info.input.from, nowMs)
        yield* metrics.step(info)
        for (const output of info.outputs) {
          if (output._tag !== "Emit") continue
          const event = output.event
          switch (event._tag) {
            case "Answered":
              yield* settle(
                keyOf(event.clientId, event.requestId),
                Exit.succeed({ result: event.result }),
              )
              break
            case "Rejected":
              yield* settle(
                keyOf(event.clientId, event.requestId),
                Exit.fail(
                  event.reason === "not-master"
                    ? new NotMaster({ master: after.master ?? null })
                    : new Rejected({ reason: event.reason }),
                ),
              )
              break
            case "Waiting":
              if (event.failed !== undefined) {
                yield* publish({
                  _tag: "MasterLost",
                  master: event.failed,
                  reason: "unreachable",
                  epoch: before?.epoch ?? 0,
                  atMs: nowMs,
                })
              }
              yield* Effect.logInfo("waiting", {
                failed: event.failed,
                explain: event.explain,
              }).pipe(Metrics.annotate(after))
              yield* publish({
                _tag: "Waiting",
                failed: event.failed,
                delayMs: event.delayMs,
                explain: event.explain,
                atMs: nowMs,
              })
              break
            case "BecameMaster":
              yield* Effect.logInfo("declared master", { epoch: event.epoch }).pipe(
                Metrics.annotate(after),
              )
              yield* publish({ _tag: "BecameMaster", epoch: event.epoch, atMs: nowMs })
              break
            case "Revoked":
              yield* Effect.logInfo("revoked a mastership", {
                epoch: event.epoch,
                revokedIndex: event.revokedIndex,
              }).pipe(Metrics.annotate(after))
              yield* publish({
                _tag: "Revoked",
                revokedIndex: event.revokedIndex,
                epoch: event.epoch,
                atMs: nowMs,
              })
              break
            case "Demoted":
              yield* publish({
                _tag: "MasterLost",
                master: self,
                reason: "demoted",
                epoch: before?.epoch ?? 0,
                atMs: nowMs,
              })
              yield* publish({
                _tag: "Acknowledged",
                master: event.master,
                epoch: event.epoch,
                atMs: nowMs,
              })
              break
            case "ReadConfirmed": {
              const waiting = reads.get(event.readId)
              reads.delete(event.readId)
              if (waiting !== undefined) yield* Deferred.succeed(waiting, after.replica.state)
              break
            }
            case "ReadRejected": {
              const waiting = reads.get(event.readId)
              reads.delete(event.readId)
              if (waiting !== undefined) {
                yield* Deferred.fail(
                  waiting,
                  event.reason === "not-master"
                    ? new NotMaster({ master: after.master ?? null })
                    : new GroupUnavailable({ reason: `read refused: ${event.reason}` }),
                )
              }
              break
            }
            case "Acknowledged":
              yield* publish({
                _tag: "Acknowledged",
                master: event.master,
                epoch: event.epoch,
                atMs: nowMs,
              })
              break
            default:
              break
          }
        }
        // Mastership changes: register the new epoch, or give up the registration.
        const isMaster = after.role === "master"
        if (isMaster && mastership?.epoch !== after.epoch) {
          const previous = mastership
          const next: Mastership = {
            epoch: after.epoch,
            status: "registering",
            ready: yield* Deferred.make<void, NotMaster>(),
            fencedBy: undefined,
            scope: undefined,
          }
          mastership = next
          if (previous !== undefined) {
            previous.status = "abandoned"
            yield* Deferred.fail(previous.ready, new NotMaster({ master: self }))
            yield* Queue.offer(jobs, previous)
          }
          yield* Queue.offer(jobs, next)
        } else if (!isMaster && mastership !== undefined) {
          const previous = mastership
          mastership = undefined
          if (previous.status !== "fenced") previous.status = "abandoned"
          yield* Deferred.fail(previous.ready, new NotMaster({ master: after.master ?? null }))
          yield* failAll(new NotMaster({ master: after.master ?? null }))
          yield* Queue.offer(jobs, previous)
        }
        // Membership: on every detection tick, who answered within the inquiry time-out.
        if (info.input._tag === "TimerFired" && info.input.timer === Machine.detectTimer) {
          // A master no majority acknowledged lately stops answering (`status.serving`) and says so.
          const held = holdsMajority(after, nowMs)
          if (held !== majority && after.role === "master") {
            if (held) yield* publish({ _tag: "MajorityRegained", epoch: after.epoch, atMs: nowMs })
            else {
              yield* Effect.logWarning("no majority acknowledged this master lately", {
                epoch: after.epoch,
              }).pipe(Metrics.annotate(after))
              yield* publish({
                _tag: "MasterLost",
                master: self,
                reason: "no-majority",
                epoch: after.epoch,
                atMs: nowMs,
              })
            }
          }
          majority = held
          const now = [...lastHeardMs]
            .filter(([, at]) => nowMs - at <= config.inquiryTimeoutMs)
            .map(([peer]) => peer)
            .sort()
          yield* metrics.tick(after, now.length)
          const joined = now.filter((peer) => !live.includes(peer))
          const lost = live.filter((peer) => !now.includes(peer))
          if (joined.length > 0 || lost.length > 0) {
            live = now
            yield* publish({ _tag: "MembershipChanged", live: now, joined, lost, atMs: nowMs })
          }
        }
      })

    // The replication messages' bytes are counted as the Runner encodes them for the wire.
    const codec = Message.codec(options.request)
    const running = yield* Runner.run(machine, {
      self,
      peers: options.servers.map((server) => server.id),
      addresses: options.addresses,
      codec: {
        ...codec,
        encode: (message) => {
          const encoded = codec.encode(message)
          if (
            (message._tag === "Replicate" || message._tag === "Snapshot") &&
            Result.isSuccess(encoded)
          )
            metrics.sent(encoded.success.byteLength)
          return encoded
        },
      },
      authentication: options.authentication,
      onStep,
    })

    // Group commit: the requests that arrive while a step is being made durable (its records
    // fsynced) go to the machine together in the next step, so they share one append and
    // fsync here, one replication message to each backup (one fsync there) and one commit.
    // Reads the same way: those that arrive while a step is being made share the next read
    // round (begun after all of them arrived). A full queue holds its callers back.
    const batched = <A>(command: (batch: ReadonlyArray<A>) => Machine.Command<Req>) =>
      Effect.gen(function* () {
        const queue = yield* Queue.bounded<A>(batchQueueMax)
        yield* Effect.forkScoped(
          Effect.forever(
            Effect.flatMap(Queue.takeBetween(queue, 1, submitBatchMax), (batch) =>
              running.command(command(batch)),
            ),
          ),
        )
        return queue
      })
    const submissions = yield* batched<Machine.Submit<Req>>((batch) =>
      batch.length === 1 ? batch[0]! : { _tag: "SubmitMany", submits: batch },
    )
    const readRequests = yield* batched<number>((batch) =>
      batch.length === 1
        ? { _tag: "Read", readId: batch[0]! }
        : { _tag: "ReadMany", readIds: batch },
    )

    // Stopping: whoever waits gets an answer, and the registration is revoked.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        const m = mastership
        mastership = undefined
        yield* failAll(new GroupUnavailable({ reason: "the server stopped" }))
        if (m !== undefined) {
          m.status = "abandoned"
          yield* Deferred.fail(m.ready, new NotMaster({ master: null }))
          yield* closeRegistration(m)
        }
      }),
    )

    const state = Effect.sync(() => latest!)

    /** Waits until this server may answer at `epoch`, or fails with where to go instead. */
    const awaitServing = (epoch: number): Effect.Effect<void, NotMaster> =>
      Effect.suspend(() => {
        const m = mastership
        if (m === undefined || m.epoch !== epoch) {
          return Effect.fail(new NotMaster({ master: latest?.master ?? null }))
        }
        if (m.status === "fenced") {
          return Effect.fail(new NotMaster({ master: parseHolder(m.fencedBy!).id }))
        }
        return m.status === "registered" ? Effect.void : Deferred.await(m.ready)
      })

    const submit = (submission: Submission<Req>): Effect.Effect<Res, SubmitError> =>
      Effect.gen(function* () {
        const current = latest!
        if (current.role !== "master") {
          return yield* new NotMaster({ master: current.master ?? null })
        }
        const m = mastership
        if (m?.status === "fenced") {
          return yield* new NotMaster({ master: parseHolder(m.fencedBy!).id })
        }
        const key = keyOf(submission.clientId, submission.requestId)
        const deferred = yield* Deferred.make<Answer<Res>, SubmitError>()
        const waiting = pending.get(key)
        if (waiting === undefined) pending.set(key, [deferred])
        else waiting.push(deferred)
        const forget = Effect.sync(() => {
          const left = pending.get(key)?.filter((other) => other !== deferred)
          if (left === undefined) return
          if (left.length === 0) pending.delete(key)
          else pending.set(key, left)
        })
        const answer = yield* Effect.andThen(
          Queue.offer(submissions, { _tag: "Submit", ...submission }),
          Deferred.await(deferred),
        ).pipe(Effect.ensuring(forget))
        yield* awaitServing(current.epoch)
        return answer.result
      }).pipe(
        Effect.timeoutOrElse({
          duration: submitTimeoutMs,
          orElse: () =>
            Effect.fail(new GroupUnavailable({ reason: `no answer within ${submitTimeoutMs} ms` })),
        }),
        Effect.tapError((error) => metrics.refused("submit", refusalReason(error))),
      )

    const read: Effect.Effect<S, NotMaster | GroupUnavailable> = Effect.gen(function* () {
      const current = latest!
      const m = mastership
      if (m?.status === "fenced")
        return yield* new NotMaster({ master: parseHolder(m.fencedBy!).id })
      if (current.role !== "master") return yield* new NotMaster({ master: current.master ?? null })
      if (readMode === "local") {
        if ((yield* status).serving) return current.replica.state
        return yield* new GroupUnavailable({ reason: "not serving" })
      }
      const readId = ++readSeq
      const deferred = yield* Deferred.make<S, NotMaster | GroupUnavailable>()
      reads.set(readId, deferred)
      return yield* Effect.andThen(
        Queue.offer(readRequests, readId),
        Deferred.await(deferred),
      ).pipe(Effect.ensuring(Effect.sync(() => reads.delete(readId))))
    }).pipe(
      Effect.timeoutOrElse({
        duration: submitTimeoutMs,
        orElse: () =>
          Effect.fail(
            new GroupUnavailable({ reason: `no majority confirmed within ${submitTimeoutMs} ms` }),
          ),
      }),
      Effect.tap(metrics.read("answered")),
      Effect.tapError((error) =>
        Effect.andThen(metrics.read("refused"), metrics.refused("read", refusalReason(error))),
      ),
    )

    const status = Effect.gen(function* () {
      const current = yield* state
      const m = mastership
      const serving =
        current.role === "master" &&
        m !== undefined &&
        m.epoch === current.epoch &&
        m.status === "registered" &&
        holdsMajority(current, yield* Clock.currentTimeMillis)
      const commitSeq = current.replica.commitSeq
      const explanation = Machine.explainDelays(config, current)
      return {
        self,
        index: current.index,
        role: current.role,
        epoch: current.epoch,
        term: Machine.termOf(current.epoch),
        master: current.master ?? null,
        serving,
        fencedBy: m?.status === "fenced" ? (m.fencedBy ?? null) : null,
        ready:
          current.role === "master" &&
          current.leader?.phase === "ready" &&
          commitSeq > 0 &&
          Replication.epochAt(current.replica, commitSeq) === current.epoch &&
          current.replica.appliedSeq >= commitSeq,
        lastSeq: Replication.lastSeq(current.replica),
        commitSeq,
        appliedSeq: current.replica.appliedSeq,
        electionDelayMs: current.electionDelayMs ?? null,
        delays: explanation.text,
        live,
      } satisfies Status
    })

    yield* Effect.logInfo("server started", {
      group,
      self,
      address: `${running.address.host}:${running.address.port}`,
    })
    return {
      self,
      address: running.address,
      submit,
      status,
      events: Stream.fromPubSub(events),
      explainDelays: () => Effect.map(state, (current) => Machine.explainDelays(config, current)),
      machineState: state,
      applied: Effect.map(state, (current) => current.replica.state),
      read,
    } satisfies ServerGroup<S, Req, Res>
  }).pipe(Effect.annotateLogs({ node: options.self, group: options.group }))

/**
 * `make` as the `ServerGroupService` layer (requests and results untyped).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <S, Req, Res>(
  options: Options<S, Req, Res>,
): Layer.Layer<
  ServerGroupService,
  TransportError.ListenError | Machine.InvalidConfig,
  Datagram.Datagram | NameServer.NameServer
> =>
  Layer.effect(
    ServerGroupService,
    make(options) as unknown as Effect.Effect<
      ServerGroup<unknown, unknown, unknown>,
      TransportError.ListenError | Machine.InvalidConfig,
      Datagram.Datagram | NameServer.NameServer | Scope.Scope
    >,
  )
