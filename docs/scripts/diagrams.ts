/**
 * Renders the sequence diagrams (diagrams/<name>.mmd, Mermaid's text) to SVG files in
 * public/diagrams/, in headless Chromium with Mermaid's own bundle, so the pages show a
 * picture drawn once and reviewed rather than one drawn in each reader's browser (where
 * Mermaid sometimes drew a "Syntax error" picture instead). Each SVG starts with the SHA-256
 * of its source: the test suite checks every picture is current with its source.
 *
 *   npm run diagrams -w @understudy/docs      redraw every diagram (after editing a .mmd)
 */
import { createHash } from "node:crypto"
import { readdirSync, readFileSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { join } from "node:path"

const root = join(import.meta.dirname, "..")
export const sourceDir = join(root, "diagrams")
export const outputDir = join(root, "public", "diagrams")
const chromiumPath = "/usr/bin/chromium"

/** The diagrams' names (one .mmd source each). */
export const names = (): ReadonlyArray<string> =>
  readdirSync(sourceDir)
    .filter((file) => file.endsWith(".mmd"))
    .map((file) => file.slice(0, -".mmd".length))
    .sort()

export const digest = (source: string): string => createHash("sha256").update(source).digest("hex")

/** The first line of a rendered SVG: which source, at which digest, it was drawn from. */
export const stamp = (name: string, source: string): string =>
  `<!-- drawn from diagrams/${name}.mmd (sha256 ${digest(source)}) by scripts/diagrams.ts: do not edit -->`

/** The digest a rendered SVG says it was drawn from, if it says. */
export const stampedDigest = (svg: string): string | undefined =>
  /^<!-- drawn from diagrams\/[\w-]+\.mmd \(sha256 ([0-9a-f]{64})\)/.exec(svg)?.[1]

/** The participants' labels of a sequence diagram ("participant A as Server A" gives "Server A"). */
export const participants = (source: string): ReadonlyArray<string> =>
  [...source.matchAll(/^\s*(?:participant|actor)\s+(\S+)(?:\s+as\s+(.+?))?\s*$/gm)].map(
    (match) => match[2] ?? match[1]!,
  )

const render = async () => {
  const { chromium } = await import("playwright-core")
  const mermaid = createRequire(import.meta.url).resolve("mermaid/dist/mermaid.min.js")
  const browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] })
  try {
    const page = await browser.newPage()
    await page.setContent("<!doctype html><html><body></body></html>")
    await page.addScriptTag({ path: mermaid })
    await page.evaluate(`mermaid.initialize({
      startOnLoad: false,
      securityLevel: "strict",
      theme: "default",
      fontFamily: "sans-serif",
      sequence: { useMaxWidth: false },
    })`)
    for (const name of names()) {
      const source = readFileSync(join(sourceDir, `${name}.mmd`), "utf8")
      // mermaid.render rejects a source it cannot parse: the script fails rather than draw it.
      const svg = (await page.evaluate(
        `mermaid.render(${JSON.stringify(`diagram-${name}`)}, ${JSON.stringify(source)}).then((r) => r.svg)`,
      )) as string
      if (svg.includes("Syntax error")) throw new Error(`${name}.mmd: Mermaid drew a syntax error`)
      writeFileSync(join(outputDir, `${name}.svg`), `${stamp(name, source)}\n${svg}\n`)
      console.log(`public/diagrams/${name}.svg`)
    }
  } finally {
    await browser.close()
  }
}

if (import.meta.main) await render()
