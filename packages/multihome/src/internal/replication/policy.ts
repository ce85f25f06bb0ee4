import { Duration, Schema } from "effect"
import type * as Association from "../../Association.ts"

/**
 * How the primary keeps the secondary's copy.
 *
 * @since 0.1.0
 * @category policies
 */
export type Policy =
  | { readonly _tag: "EveryUpdate" }
  /** `every`: how often (`"100 millis"`, a number of milliseconds, a `Duration`). */
  | { readonly _tag: "Interval"; readonly every: Duration.Input }
  | { readonly _tag: "OnEvent"; readonly events: ReadonlyArray<Association.Event["_tag"]> }
  | { readonly _tag: "OnImpendingFailure" }
  | { readonly _tag: "StateNode" }

/** Events that change what the peer and we agree on, the default of `on-event`. */
const defaultEvents: ReadonlyArray<Association.Event["_tag"]> = [
  "CommUp",
  "Message",
  "PathChange",
  "Restart",
]

const eventTags: ReadonlyArray<Association.Event["_tag"]> = [
  "CommUp",
  "Message",
  "PathChange",
  "SendFailed",
  "CommLost",
  "PeerError",
  "Restart",
  "ShutdownComplete",
  "Dropped",
  "Closed",
]

/**
 * A policy name is not known or its parameter is wrong.
 *
 * @since 0.1.0
 * @category errors
 */
export class PolicyError extends Schema.TaggedError<PolicyError>()("PolicyError", {
  text: Schema.String,
  detail: Schema.String,
}) {}

/**
 * Reads a policy from its command-line form: `every-update`, `interval` (100 ms) or
 * `interval:MS`, `on-event` or `on-event:CommUp,Message`, `on-impending-failure`,
 * `state-node`.
 *
 * @since 0.1.0
 * @category policies
 */
export const parsePolicy = (text: string): Policy | PolicyError => {
  const [name, parameter] = text.split(":", 2) as [string, string | undefined]
  switch (name) {
    case "every-update":
      return parameter === undefined ? { _tag: "EveryUpdate" } : bad(text, "takes no parameter")
    case "interval": {
      const everyMs = parameter === undefined ? 100 : Number(parameter)
      return Number.isSafeInteger(everyMs) && everyMs >= 1 && everyMs <= 3_600_000
        ? { _tag: "Interval", every: everyMs }
        : bad(text, "the interval is a whole number of milliseconds, 1 to 3600000")
    }
    case "on-event": {
      if (parameter === undefined) return { _tag: "OnEvent", events: defaultEvents }
      const events = parameter.split(",")
      const unknown = events.filter(
        (event) => !(eventTags as ReadonlyArray<string>).includes(event),
      )
      return unknown.length === 0 && events.length > 0
        ? { _tag: "OnEvent", events: events as Array<Association.Event["_tag"]> }
        : bad(text, `unknown events ${unknown.join(", ")}; known: ${eventTags.join(", ")}`)
    }
    case "on-impending-failure":
      return parameter === undefined
        ? { _tag: "OnImpendingFailure" }
        : bad(text, "takes no parameter")
    case "state-node":
      return parameter === undefined ? { _tag: "StateNode" } : bad(text, "takes no parameter")
    default:
      return bad(
        text,
        "known policies: every-update, interval[:MS], on-event[:EVENTS], on-impending-failure, state-node",
      )
  }
}

const bad = (text: string, detail: string) => new PolicyError({ text, detail })

/**
 * The command-line form of a policy ({@link parsePolicy} reads it back).
 *
 * @since 0.1.0
 * @category policies
 */
export const formatPolicy = (policy: Policy): string => {
  switch (policy._tag) {
    case "EveryUpdate":
      return "every-update"
    case "Interval": {
      // A policy read by `parsePolicy` reads back the same; one written in code may hold
      // a duration the command line can not say (then its whole milliseconds, or nothing).
      const every = Duration.fromInput(policy.every)
      return every._tag === "Some"
        ? `interval:${Math.round(Duration.toMillis(every.value))}`
        : "interval"
    }
    case "OnEvent":
      return `on-event:${policy.events.join(",")}`
    case "OnImpendingFailure":
      return "on-impending-failure"
    case "StateNode":
      return "state-node"
  }
}

/**
 * Whether a copy kept under `policy` is the primary's state when the secondary takes over
 * (so the takeover needs no resynchronisation). `on-impending-failure` counts: the primary
 * falls silent after its one synchronisation, so that copy stays exact (and without a
 * warning there is no copy at all).
 *
 * @since 0.1.0
 * @category policies
 */
export const isExact = (policy: Policy): boolean =>
  policy._tag === "EveryUpdate" ||
  policy._tag === "StateNode" ||
  policy._tag === "OnImpendingFailure"
