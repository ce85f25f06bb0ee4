/** Strings as UTF-8 frames: the codec the SimNet and metrics tests send their messages with. */
import * as Codec from "../../src/Codec.ts"

export const encoder = new TextEncoder()
export const decoder = new TextDecoder()

export const text = Codec.make<string>({
  name: "text",
  encode: (message) => encoder.encode(message),
  decode: (payload) => decoder.decode(payload),
})
