/**
 * The published packages as a user gets them: `npm pack` of each, installed from the tarballs
 * with `effect` into an empty Node 22 project and an empty Node 24 project, then one example
 * each run under that Node (`examples/`). Node 22 comes from the `node` npm package,
 * installed once per machine into a cache under `os.tmpdir()`.
 */
import { execFile } from "node:child_process"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { copyFile, mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const repository = fileURLToPath(new URL("..", import.meta.url))
const examples = fileURLToPath(new URL("examples", import.meta.url))
/** The Node 22 the packages are checked on (the `node` package of that version). */
const node22Version = "22.23.3"
const effectVersion = "4.1.0"
/**
 * Every command is bounded; an install may fetch from the registry, and on a loaded 2-core
 * machine one took over 300 s.
 */
const commandTimeoutMs = 600_000

interface Manifest {
  readonly name: string
  readonly version: string
  readonly private?: boolean
  readonly engines?: { readonly node?: string }
  readonly peerDependencies?: Readonly<Record<string, string>>
  readonly devDependencies?: Readonly<Record<string, string>>
  readonly dependencies?: Readonly<Record<string, string>>
  readonly repository?: unknown
  readonly homepage?: string
  readonly keywords?: ReadonlyArray<string>
  readonly license?: string
}

/**
 * The packages checked here, by directory under packages/. A newly published package adds
 * its directory here and its example to {@link expected}.
 */
const checked = [
  "transport",
  "machine",
  "store",
  "port-election",
  "staggered-election",
  "multihome",
  "heartbeat-pool",
  "checkpoint",
]

const published = checked.map((directory) => ({
  directory: Path.join(repository, "packages", directory),
  manifest: JSON.parse(
    readFileSync(Path.join(repository, "packages", directory, "package.json"), "utf8"),
  ) as Manifest,
}))

/** Runs `file args` in `cwd` to its end; rejects with its output if it fails. */
const run = (
  file: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env?: NodeJS.ProcessEnv; readonly timeoutMs?: number },
) =>
  new Promise<{ readonly stdout: string; readonly stderr: string }>((resolve, reject) => {
    execFile(
      file,
      [...args],
      {
        cwd: options.cwd,
        env: options.env ?? process.env,
        timeout: options.timeoutMs ?? commandTimeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) =>
        error === null
          ? resolve({ stdout, stderr })
          : reject(new Error(`${file} ${args.join(" ")} failed: ${error.message}\n${stderr}`)),
    )
  })

/** npm with `node` (and so npm's own engine checks) of the directory `nodeBin` first on PATH. */
const npm = (args: ReadonlyArray<string>, cwd: string, nodeBin: string) =>
  run("npm", args, {
    cwd,
    env: { ...process.env, PATH: `${nodeBin}${Path.delimiter}${process.env.PATH ?? ""}` },
  })

/**
 * Node 22's binary, from the `node` npm package, installed once into
 * `os.tmpdir()/understudy-node-<version>` (built in a temporary directory and renamed into
 * place, so concurrent runs never see half an install).
 */
const node22 = async (): Promise<string> => {
  const directory = Path.join(Os.tmpdir(), `understudy-node-${node22Version}`)
  const binary = Path.join(directory, "node_modules", ".bin", "node")
  if (existsSync(binary)) return binary
  const temporary = await mkdtemp(`${directory}.tmp-`)
  try {
    // The `node` package installs its platform's binary from its install script.
    await writeFile(
      Path.join(temporary, "package.json"),
      JSON.stringify({ private: true, allowScripts: { node: true } }),
    )
    await npm(
      ["install", "--no-audit", "--no-fund", `node@${node22Version}`],
      temporary,
      Path.dirname(process.execPath),
    )
    await rename(temporary, directory).catch((error: NodeJS.ErrnoException) => {
      // Another run installed it first: use that one.
      if (error.code !== "ENOTEMPTY" && error.code !== "EEXIST") throw error
    })
  } finally {
    await rm(temporary, { recursive: true, force: true })
  }
  return binary
}

let work = ""
const projects = new Map<"22" | "24", { readonly directory: string; readonly node: string }>()

beforeAll(async () => {
  work = await mkdtemp(Path.join(Os.tmpdir(), "understudy-packaging-"))
  const tarballs = Path.join(work, "tarballs")
  await mkdir(tarballs)
  /** Package name -> its tarball, as a `file:` spec. */
  const packed: Record<string, string> = {}
  for (const { directory, manifest } of published) {
    const { stdout } = await npm(
      ["pack", "--json", "--pack-destination", tarballs],
      directory,
      Path.dirname(process.execPath),
    )
    const [entry] = JSON.parse(stdout) as Array<{ readonly filename: string }>
    packed[manifest.name] = `file:${Path.join(tarballs, entry!.filename)}`
  }
  const nodes = { "22": await node22(), "24": process.execPath } as const
  for (const [line, node] of Object.entries(nodes) as Array<["22" | "24", string]>) {
    const directory = Path.join(work, `node-${line}`)
    await mkdir(directory)
    // `overrides` points the packages' dependencies on each other at the tarballs too: the
    // registry never hears of @understudy (unpublished names there fail slowly, with retries).
    await writeFile(
      Path.join(directory, "package.json"),
      JSON.stringify({
        name: `packaging-node-${line}`,
        private: true,
        type: "module",
        dependencies: packed,
        overrides: packed,
      }),
    )
    // --engine-strict: a package whose `engines` excludes this Node fails the install.
    await npm(
      [
        "install",
        "--no-audit",
        "--no-fund",
        // What the repository's own install just fetched is in npm's cache: no round trips.
        "--prefer-offline",
        "--engine-strict",
        `effect@${effectVersion}`,
      ],
      directory,
      Path.dirname(node),
    )
    for (const file of readdirSync(examples))
      await copyFile(Path.join(examples, file), Path.join(directory, file))
    projects.set(line, { directory, node })
  }
})

afterAll(async () => {
  if (work !== "") await rm(work, { recursive: true, force: true })
})

/** Runs an example with the project's Node: the one JSON line it prints. */
const example = async (line: "22" | "24", file: string): Promise<unknown> => {
  const project = projects.get(line)!
  const { stdout } = await run(project.node, [file], {
    cwd: project.directory,
    timeoutMs: 30_000,
  })
  return JSON.parse(stdout.trim())
}

/** What each example prints: a real use of its package, its result exact. */
const expected: ReadonlyArray<readonly [string, string, unknown]> = [
  ["@understudy/transport", "transport.mjs", { reply: "HELLO" }],
  ["@understudy/machine", "machine.mjs", { events: ["Suspected"], suspected: ["b"] }],
  [
    "@understudy/store",
    "store.mjs",
    {
      value: "active",
      etcd: "@understudy/store/etcd needs the etcd3 package (an optional peer dependency of @understudy/store): npm install etcd3@^1.1.2",
    },
  ],
  ["@understudy/store", "store.cjs", { value: "v" }],
  ["@understudy/port-election", "port-election.mjs", { role: "Supervisor" }],
  // n2 waits only the base delay; n3 also waits for n2's declaration to reach it (7 ms).
  ["@understudy/staggered-election", "staggered-election.mjs", { n2: 50, n3: 57 }],
  ["@understudy/multihome", "multihome.mjs", { reply: "hello" }],
  ["@understudy/heartbeat-pool", "heartbeat-pool.mjs", { signed: true, raised: false }],
  ["@understudy/checkpoint", "checkpoint.mjs", { acked: 1_200, damaged: "CheckpointDecodeError" }],
]

describe("published packages: manifests", () => {
  it.each(published.map((entry) => [entry.manifest.name, entry] as const))(
    "%s: effect a peer, Node 22 and later, @understudy ranges, what npm shows",
    (_name, { directory, manifest }) => {
      expect(manifest.peerDependencies?.effect).toBe("^4.1.0")
      expect(manifest.devDependencies?.effect).toBe(effectVersion)
      expect(manifest.dependencies?.effect).toBe(undefined)
      expect(manifest.engines?.node).toBe(">=22")
      for (const [dependency, range] of Object.entries(manifest.dependencies ?? {}))
        if (dependency.startsWith("@understudy/")) expect(range).toBe(`^${manifest.version}`)
      expect(manifest.version).toBe("0.1.0")
      expect(manifest.license).toBe("MIT")
      expect(manifest.repository).toBeDefined()
      expect(manifest.homepage).toMatch(/^https:\/\//)
      expect(manifest.keywords?.length).toBeGreaterThanOrEqual(3)
      expect(existsSync(Path.join(directory, "README.md"))).toBe(true)
    },
  )

  it("every published package under packages/ is checked here", () => {
    const publishable = readdirSync(Path.join(repository, "packages")).filter((directory) => {
      const file = Path.join(repository, "packages", directory, "package.json")
      return (
        existsSync(file) && (JSON.parse(readFileSync(file, "utf8")) as Manifest).private !== true
      )
    })
    expect([...publishable].sort()).toEqual([...checked].sort())
  })

  it("every package checked has an example, and each is published", () => {
    const covered = new Set(expected.map(([name]) => name))
    expect(
      published.map((entry) => entry.manifest.name).filter((name) => !covered.has(name)),
    ).toEqual([])
    for (const { manifest } of published) expect(manifest.private).toBe(undefined)
  })
})

for (const line of ["22", "24"] as const) {
  describe(`published packages installed from their tarballs on Node ${line}`, () => {
    it("runs that Node", async () => {
      const project = projects.get(line)!
      const { stdout } = await run(project.node, ["--version"], { cwd: project.directory })
      expect(stdout.trim().split(".")[0]).toBe(`v${line}`)
    })

    it.each(expected.map(([name, file, output]) => [name, file, output] as const))(
      "%s: %s",
      async (_name, file, output) => {
        expect(await example(line, file)).toEqual(output)
      },
    )
  })
}
