import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { describe, expect, it } from "vitest"
import { sample, scrape } from "../src/Prometheus.ts"

const text = [
  "# TYPE x_ms histogram",
  'x_ms_count{role="master"} 3',
  'x_ms_count{role="master",le="+Inf"} 9',
  "x_total 1.5",
  "x_total_other 7",
].join("\n")

describe("Prometheus", () => {
  it("sample reads one series exactly: labels as written, no prefix match, undefined when absent", () => {
    expect(sample(text, 'x_ms_count{role="master"}')).toBe(3)
    expect(sample(text, "x_total")).toBe(1.5)
    expect(sample(text, "x_tot")).toBeUndefined()
    expect(sample(text, 'x_ms_count{role="backup"}')).toBeUndefined()
  })

  it("scrape gives the text of a 200 and throws on any other status", async () => {
    const server = createServer((request, response) => {
      if (request.url === "/metrics") response.writeHead(200).end(text)
      else response.writeHead(404).end("not found")
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    try {
      expect(await scrape(`${base}/metrics`)).toBe(text)
      await expect(scrape(`${base}/other`)).rejects.toThrow("404")
    } finally {
      server.closeAllConnections()
      server.close()
    }
  })
})
