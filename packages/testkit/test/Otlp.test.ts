import { describe, expect, it } from "vitest"
import { collector } from "../src/Otlp.ts"

describe("Otlp.collector", () => {
  it("answers every export with 200 and keeps only the trace exports' bodies", async () => {
    const otlp = await collector()
    try {
      for (const [path, body] of [
        ["/v1/traces", '{"span":"a"}'],
        ["/v1/metrics", '{"metric":"m"}'],
        ["/v1/traces", '{"span":"b"}'],
      ] as const) {
        const response = await fetch(`${otlp.url}${path}`, { method: "POST", body })
        expect(response.status).toBe(200)
        await response.body?.cancel()
      }
      expect(otlp.traces()).toBe('{"span":"a"}\n{"span":"b"}')
    } finally {
      await otlp.close()
    }
  })
})
