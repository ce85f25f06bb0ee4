/**
 * The replicated state machine of the key-value service: a persistent map (so applying a
 * write copies O(log n), not the whole map) and its requests.
 *
 * @since 0.1.0
 */
import { HashMap, Option, Schema } from "effect"

/** @since 0.1.0 @category models */
export const Request = Schema.Union([
  Schema.TaggedStruct("Put", { key: Schema.String, value: Schema.String }),
  Schema.TaggedStruct("Delete", { key: Schema.String }),
])

/** @since 0.1.0 @category models */
export type Request = typeof Request.Type

/** @since 0.1.0 @category models */
export type State = HashMap.HashMap<string, string>

/** What a write replaced. @since 0.1.0 @category models */
export interface Result {
  readonly previous: string | null
}

/** The wire and disk form of the state (a snapshot). @since 0.1.0 @category models */
export const StateSchema = Schema.HashMap(Schema.String, Schema.String)

/** @since 0.1.0 @category models */
export const ResultSchema = Schema.Struct({ previous: Schema.NullOr(Schema.String) })

/** @since 0.1.0 */
export const initial: State = HashMap.empty()

/** Pure and deterministic, as every replica must apply it. @since 0.1.0 */
export const apply = (state: State, request: Request): readonly [State, Result] => {
  const previous = Option.getOrNull(HashMap.get(state, request.key))
  return request._tag === "Put"
    ? [HashMap.set(state, request.key, request.value), { previous }]
    : [HashMap.remove(state, request.key), { previous }]
}
