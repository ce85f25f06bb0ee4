import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { program as transportEcho } from "../examples/transport-echo.ts"

describe("documentation examples run and do what the docs say", () => {
  it.live("transport-echo: the server upper-cases, the client closes locally", () =>
    Effect.gen(function* () {
      const result = yield* transportEcho
      expect(result.reply).toEqual({ from: "server", text: "HELLO" })
      expect(result.closed).toBe("LocalClose")
    }),
  )
})
