import { Codec } from "@understudy/transport"
import { Schema } from "effect"

/** The messages of the runner tests' machines: a ping and its answer, numbered. */
export const Wire = Schema.Union([
  Schema.TaggedStruct("Ping", { n: Schema.Number }),
  Schema.TaggedStruct("Pong", { n: Schema.Number }),
])
export type Wire = typeof Wire.Type
export const codec: Codec.Codec<Wire> = Codec.json(Wire)
