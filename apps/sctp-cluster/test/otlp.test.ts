/**
 * `sctp-cluster node --otlp URL` on real processes (issue 18): the pair links up, the primary
 * is SIGKILLed, the secondary takes over; stopped with SIGTERM, its exporter flushes, and the
 * failover's spans (`multihome.failover` around the whole of it, `multihome.takeover` for the
 * adoption) have reached testkit's OpenTelemetry collector, with the node's attributes, and
 * so has the takeovers counter. Waits
 * are for lines, bounded.
 */
import { Eventually, Otlp } from "@understudy/testkit"
import { afterEach, describe, expect, it } from "vitest"
import * as App from "./support.ts"

afterEach(App.killAll)

describe("sctp-cluster node --otlp", () => {
  it("exports a takeover's failover and takeover spans to an OpenTelemetry collector", async () => {
    const collector = await Otlp.collector()
    try {
      const ports = await App.clusterPorts()
      const { primary, secondary } = await App.startPair(ports, undefined, [
        "--otlp",
        collector.url,
      ])
      await App.linkUp("the secondary's link is up", secondary)
      await App.linkUp("the primary's link is up", primary)
      primary.kill("SIGKILL")
      await primary.exit()
      await Eventually.promise(
        "the secondary takes over",
        () => secondary.lines.find((line) => line.t === "cluster" && line._tag === "TookOver"),
        { within: 30_000 },
      )
      // Nothing of the failover before the exporter's flush at exit.
      secondary.kill("SIGTERM")
      await secondary.exit()
      const traces = collector.traces()
      expect(traces).toContain("multihome.failover")
      expect(traces).toContain("multihome.takeover")
      // The failover span says which node and what noticed it (the link's end).
      expect(traces).toContain(`udp://127.0.0.3:${ports.udpPort}`)
      expect(traces).toContain("understudy.trigger")
      // And the metrics: the secondary's one takeover reached the collector.
      expect(collector.latest("understudy_multihome_takeovers_total")?.value).toBe(1)
    } finally {
      await collector.close()
    }
  }, 120_000)
})
