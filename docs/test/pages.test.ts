/**
 * The pages' own promises: every code block is a file in examples/ that a test runs or
 * checks, the command lines and configuration shown are right, and no page uses words only
 * the project's developers would understand.
 */
import { execFile, execFileSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { it as effectIt } from "@effect/vitest"
import { Ports } from "@understudy/testkit"
import { Observability } from "@understudy/transport"
import { Effect, Layer } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import * as LicensePool from "../../apps/license-pool/src/common.ts"
import * as SctpCluster from "../../apps/sctp-cluster/src/cli.ts"
import * as ServerGroupCli from "../../apps/server-group/src/cli.ts"
import * as ServerGroupCommon from "../../apps/server-group/src/common.ts"
import { charts, draw, packagesWithCharts, runBench } from "../scripts/plots.ts"

const docs = join(import.meta.dirname, "..")
const root = join(docs, "..")
const examples = join(docs, "examples")
const read = (path: string) => readFileSync(path, "utf8")

/** The site's pages (README.md is the repository's note about the site, not a page). */
const pages = readdirSync(docs)
  .filter((file) => file.endsWith(".md") && file !== "README.md")
  .sort()

/**
 * The commands of a shell example, each as its words: comments dropped, lines continued with
 * a backslash joined, a line with an unclosed quote joined with the next ones.
 */
const commandLines = (script: string): ReadonlyArray<ReadonlyArray<string>> => {
  const commands: Array<Array<string>> = []
  let pending = ""
  for (const raw of script.split("\n")) {
    const line = `${pending}${raw}`
    if (line.endsWith("\\")) {
      pending = `${line.slice(0, -1)} `
      continue
    }
    if ((line.match(/'/g)?.length ?? 0) % 2 === 1) {
      pending = `${line}\n`
      continue
    }
    pending = ""
    const words = (
      line
        .replace(/\s+#\s.*$/, "")
        .trim()
        .match(/"[^"]*"|'[^']*'|\S+/g) ?? []
    ).filter((word) => word !== "")
    if (words.length > 0) commands.push(words)
  }
  return commands
}

const fences = (text: string) => [...text.matchAll(/^\s*(```|~~~)/gm)].length / 2

describe("code blocks", () => {
  it("every code block on a page is imported from a file in examples/, and that file exists", () => {
    const inline: Array<string> = []
    const imported = new Set<string>()
    for (const page of pages) {
      const text = read(join(docs, page))
      if (fences(text) > 0) inline.push(page)
      for (const match of text.matchAll(/^<<< @\/examples\/([^\s#{[]+)/gm)) {
        imported.add(match[1]!)
      }
    }
    // No page writes a block inline.
    expect(inline).toEqual([])
    const files = readdirSync(examples).filter((file) => file !== "support")
    expect([...imported].sort()).toEqual(files.sort())
  })

  it("every TypeScript example is run by the examples suite", () => {
    const suite = read(join(docs, "test", "examples.test.ts"))
    const typescript = readdirSync(examples).filter((file) => file.endsWith(".ts"))
    expect(typescript.length).toBeGreaterThanOrEqual(16)
    const notRun = typescript.filter((file) => !suite.includes(`from "../examples/${file}"`))
    expect(notRun).toEqual([])
  })

  it("the install line names published packages and Effect, their peer dependency", () => {
    const [command, ...more] = read(join(examples, "install.sh")).trim().split("\n")
    expect(more).toEqual([])
    const words = command!.split(" ")
    expect(words.slice(0, 2)).toEqual(["npm", "install"])
    const names = words.slice(2)
    expect(names).toContain("effect")
    for (const name of names.filter((name) => name !== "effect")) {
      const directory = name.replace("@understudy/", "")
      const manifest = JSON.parse(read(join(root, "packages", directory, "package.json")))
      expect({
        name,
        private: manifest.private ?? false,
        peer: "effect" in (manifest.peerDependencies ?? {}),
      }).toEqual({ name, private: false, peer: true })
    }
  })

  it("each `npm run` line of the benchmark commands names a script that exists", () => {
    const lines = read(join(examples, "bench.sh"))
      .split("\n")
      .filter((line) => line.startsWith("npm "))
    expect(lines.length).toBe(2)
    for (const line of lines) {
      const [, script, workspace] = /^npm run (\S+)(?: -w (\S+))?$/.exec(line) ?? []
      expect(script, line).toBeDefined()
      const directory =
        workspace === undefined ? root : workspace === "@understudy/docs" ? docs : undefined
      expect(directory, line).toBeDefined()
      const manifest = JSON.parse(read(join(directory!, "package.json")))
      expect(Object.keys(manifest.scripts), line).toContain(script)
    }
    // The docs' bench runs the benchmarks the plots come from, then draws them.
    const manifest = JSON.parse(read(join(docs, "package.json")))
    expect(manifest.scripts.bench).toBe("node scripts/plots.ts --bench")
  })

  it("the sctp-cluster command lines shown are ones the program accepts", () => {
    const invocations = commandLines(read(join(examples, "sctp-cluster.sh"))).map((words) => {
      expect(words[0]).toBe(SctpCluster.programName)
      return SctpCluster.parse(words.slice(1))
    })
    expect(invocations.map((invocation) => invocation._tag)).toEqual([
      "Keygen",
      "Node",
      "Node",
      "Status",
    ])
    const [, secondary, primary, status] = invocations as [
      unknown,
      SctpCluster.NodeInvocation,
      SctpCluster.NodeInvocation,
      Extract<SctpCluster.Invocation, { _tag: "Status" }>,
    ]
    expect([secondary.role, primary.role]).toEqual(["secondary", "primary"])
    expect(secondary.link).toEqual(primary.link)
    // The status asked for is the one the primary serves.
    expect(status.status).toEqual(primary.status)
  })

  it("the server-group command lines shown are ones the program accepts, with the API's token", () => {
    const script = read(join(examples, "server-group.sh"))
    const program = /^sg="(.+)"$/m.exec(script)?.[1]
    expect(program).toBe("node apps/server-group/src/main.ts")
    expect(existsSync(join(root, program!.split(" ")[1]!))).toBe(true)
    const lines = commandLines(script)
    const invocations = lines
      .filter((words) => words[0] === "$sg")
      .map((words) => ServerGroupCli.parse(words.slice(1)))
    expect(invocations.map((invocation) => invocation._tag)).toEqual([
      "KeyGen",
      "NameServer",
      "Serve",
      "Load",
    ])
    // The token line, run on a key file of the right form, gives the token the servers want.
    const snippet = /node -e '([^']+)'/.exec(script)?.[1]
    expect(snippet).toBeDefined()
    const directory = mkdtempSync(join(tmpdir(), "understudy-docs-key-"))
    try {
      const key = randomBytes(32)
      writeFileSync(join(directory, "cluster.key"), `${key.toString("hex")}\n`)
      const printed = execFileSync(
        process.execPath,
        ["-e", snippet!, join(directory, "cluster.key")],
        {
          encoding: "utf8",
        },
      )
      expect(printed.trim()).toBe(ServerGroupCommon.apiToken(key))
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
    const curls = lines.filter((words) => words[0] === "curl")
    expect(curls).toHaveLength(2)
    expect(curls[0]!.join(" ")).toContain(`-H "${ServerGroupCommon.tokenHeader}: $token"`)
    const serve = invocations[2] as Extract<ServerGroupCli.Invocation, { _tag: "Serve" }>
    for (const curl of curls) expect(curl.join(" ")).toContain(`localhost:${serve.http.port}/`)
  })

  it("the license-pool command lines shown use the programs' own commands and flags", async () => {
    const script = read(join(examples, "license-pool.sh"))
    const pool = /^POOL=(\S+)$/m.exec(script)?.[1]
    expect(typeof LicensePool.parsePool(pool!)).toBe("object")
    const bins = JSON.parse(read(join(root, "apps", "license-pool", "package.json"))).bin
    const lines = commandLines(script).filter((words) => !words[0]!.includes("="))
    expect(lines.map((words) => words[0])).toEqual([
      "license-admin",
      "license-admin",
      "license-admin",
      "license-server",
      "license-client",
      "license-admin",
      "license-admin",
    ])
    // Each program's help for the command shown (run at once: a second or so each).
    const helps = await Promise.all(
      lines.map((words) => {
        expect(Object.keys(bins)).toContain(words[0])
        const source = join(
          root,
          "apps",
          "license-pool",
          "src",
          `${words[0]!.slice("license-".length)}.ts`,
        )
        const command = words[0] === "license-admin" ? [words[1]!] : []
        return new Promise<string>((resolve, reject) =>
          execFile(process.execPath, [source, ...command, "--help"], (error, stdout) =>
            error === null ? resolve(stdout) : reject(error),
          ),
        )
      }),
    )
    lines.forEach((words, i) => {
      const known = new Set(helps[i]!.match(/^\s+--[a-z-]+/gm)?.map((flag) => flag.trim()))
      const used = words.filter((word) => word.startsWith("--"))
      expect({ line: words.join(" "), unknown: used.filter((flag) => !known.has(flag)) }).toEqual({
        line: words.join(" "),
        unknown: [],
      })
    })
  })

  it("the observability flags shown are the programs' own usage lines", () => {
    const dedent = (text: string) =>
      text
        .trim()
        .split("\n")
        .map((line) => line.replace(/^ {2}/, "").trimEnd())
    const shown = read(join(examples, "observability-flags.txt")).trim().split("\n")
    expect(shown).toEqual(dedent(Observability.usage))
  })

  effectIt.live("the Prometheus configuration scrapes what --metrics serves", () =>
    Effect.gen(function* () {
      const config = read(join(examples, "prometheus.yml"))
      const flag = /--metrics (\S+)/.exec(config)?.[1]
      const targets = [...config.matchAll(/targets: \["([^"]+)"\]/g)].map((match) => match[1])
      expect(targets).toEqual([flag])
      // No metrics_path: Prometheus asks for /metrics, which is where the layer serves.
      expect(config).not.toContain("metrics_path")
      const target = Observability.parseHostPort(flag!)
      expect(target).toEqual({ host: "127.0.0.1", port: 9464 })
      // Served on a free port rather than the shown one, which may be taken on this machine.
      const port = yield* Effect.promise(() => Ports.freeTcpPort())
      const scraped = yield* Effect.scoped(
        Effect.gen(function* () {
          yield* Layer.build(
            Observability.layer({ metrics: { host: "127.0.0.1", port }, otlp: undefined }, "docs"),
          )
          return yield* Effect.promise(async () => {
            const response = await fetch(`http://127.0.0.1:${port}/metrics`)
            await response.text()
            return { status: response.status, type: response.headers.get("content-type") }
          })
        }),
      )
      expect(scraped.status).toBe(200)
      expect(scraped.type).toContain("text/plain")
    }),
  )
})

describe("benchmark plots", () => {
  const scratch = mkdtempSync(join(tmpdir(), "understudy-docs-plots-"))
  afterAll(() => rmSync(scratch, { recursive: true, force: true }))

  it("a bench's run records its last JSON line; a failed run or one without figures is refused", async () => {
    const node = process.execPath
    await runBench(
      "transport",
      [
        node,
        "-e",
        `console.log("a table"); console.log('{"msgs_per_s":10,"baseline_msgs_per_s":5}')`,
      ],
      scratch,
    )
    expect(JSON.parse(read(join(scratch, "transport.json")))).toEqual({
      msgs_per_s: 10,
      baseline_msgs_per_s: 5,
    })
    await expect(
      runBench("transport", [node, "-e", "console.log('no figures')"], scratch),
    ).rejects.toThrow("printed no figures")
    await expect(runBench("transport", [node, "-e", "process.exit(3)"], scratch)).rejects.toThrow(
      "exited with 3",
    )
  })

  it("every chart drawn from the recorded figures is on the benchmarks page, and the page shows no other", () => {
    const drawn = draw(join(docs, "bench"), join(scratch, "plots"))
    expect(drawn.length).toBeGreaterThanOrEqual(12)
    // Latency distributions, drawn from the samples the benches recorded.
    expect(
      drawn.filter((file) => file.endsWith("-distribution.svg")).length,
    ).toBeGreaterThanOrEqual(3)
    const page = read(join(docs, "benchmarks.md"))
    const shown = [...page.matchAll(/\(\/plots\/([^)]+\.svg)\)/g)].map((match) => match[1])
    expect(shown.sort()).toEqual([...drawn].sort())
    // Each recorded package gives at least one chart.
    for (const name of packagesWithCharts) {
      const figures = JSON.parse(read(join(docs, "bench", `${name}.json`)))
      expect({ name, charts: charts(name, figures).length > 0 }).toEqual({ name, charts: true })
    }
  })
})

describe("words", () => {
  /** What only the project's developers would understand, or what is not yet true. */
  const internal = [
    /\bseeds? \d+/i,
    /\bclaims? \d/i,
    /\bissue #?\d+/i,
    /\bTODO\b|\bFIXME\b|\bXXX\b/,
    /\b(being|still to be) (built|written)\b/i,
    /\(in progress\)/i,
    /\bSEED=|UNDERSTUDY_SEED/,
    /\bFastSim\b|\btestkit\b/,
    /\bsession (notes?|report)\b/i,
  ]

  it("no page or example shown on a page uses internal words", () => {
    const found: Array<string> = []
    const texts = [
      ...pages.map((page) => [page, read(join(docs, page))] as const),
      ...readdirSync(examples)
        .filter((file) => file !== "support")
        .map((file) => [`examples/${file}`, read(join(examples, file))] as const),
      ...readdirSync(join(docs, "diagrams")).map(
        (file) => [`diagrams/${file}`, read(join(docs, "diagrams", file))] as const,
      ),
    ]
    for (const [name, text] of texts) {
      for (const pattern of internal) {
        const match = pattern.exec(text)
        if (match !== null) found.push(`${name}: ${match[0]}`)
      }
    }
    expect(found).toEqual([])
  })

  it("no page of the API reference (TypeDoc, from the packages' JSDoc) uses internal words", () => {
    // Generated by the build (`npm run build -w @understudy/docs`), which the site tests need too.
    const api = join(docs, "public", "api")
    const html = readdirSync(api, { recursive: true, encoding: "utf8" }).filter((file) =>
      file.endsWith(".html"),
    )
    expect(html.length).toBeGreaterThan(100)
    const found = new Map<string, string>()
    for (const file of html) {
      const text = read(join(api, file)).replace(/<[^>]*>/g, " ")
      for (const pattern of internal) {
        const match = pattern.exec(text)
        if (match !== null) found.set(file, match[0])
      }
    }
    expect([...found].map((entry) => entry.join(": "))).toEqual([])
  })
})
