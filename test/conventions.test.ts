/**
 * Conventions every package keeps (issue 17, "one way to do each thing"), checked over the whole
 * tree so a new package or module cannot quietly break them:
 * - every error class a package exports is a `Schema.TaggedError` and its `_tag` is defined by
 *   one package only (a caller matching on `_tag` must know whose error it has);
 * - no queue, PubSub, Mailbox or `Stream.callback` in `packages/<name>/src` is unbounded,
 *   unless listed with the reason it cannot grow without bound;
 * - limits are named xUnitMax, and each Promise facade is a top-level createX.
 * The packages are imported as users import them (their built `dist`, via the package names).
 */
import { readdirSync, readFileSync, statSync } from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import ts from "typescript"
import { describe, expect, it } from "vitest"

const repository = fileURLToPath(new URL("..", import.meta.url))

/**
 * What a check found against the cases listed as known: fails on one found and not listed
 * (a new violation) and on one listed and not found (fixed: take it off the list).
 */
const expectOnlyListed = (
  found: ReadonlyArray<string>,
  listed: ReadonlyArray<string>,
  violation: string,
): void => {
  expect(
    found.filter((x) => !listed.includes(x)),
    violation,
  ).toEqual([])
  expect(
    listed.filter((x) => !found.includes(x)),
    "fixed or gone: take it off the list",
  ).toEqual([])
}

/** Every public entry point: each package's `.` export, plus the store's `./etcd`. */
const entries = {
  "@understudy/checkpoint": () => import("@understudy/checkpoint"),
  "@understudy/heartbeat-pool": () => import("@understudy/heartbeat-pool"),
  "@understudy/machine": () => import("@understudy/machine"),
  "@understudy/multihome": () => import("@understudy/multihome"),
  "@understudy/port-election": () => import("@understudy/port-election"),
  "@understudy/staggered-election": () => import("@understudy/staggered-election"),
  "@understudy/store": () => import("@understudy/store"),
  "@understudy/store/etcd": () => import("@understudy/store/etcd"),
  "@understudy/testkit": () => import("@understudy/testkit"),
  "@understudy/transport": () => import("@understudy/transport"),
} as const

/** The package an entry point belongs to (`@understudy/store/etcd` is the store's). */
const packageOf = (entry: string): string => entry.split("/").slice(0, 2).join("/")

export interface ErrorClass {
  readonly package: string
  /** Where the class is reached from the entry point, e.g. `TransportError.ConnectError`. */
  readonly path: string
  readonly tag: string
  readonly schema: boolean
}

/**
 * A `Schema.TaggedError` class carries its tag as the literal of its `_tag` field; any other
 * tagged error (`Data.TaggedError`) sets `_tag` on its instances.
 */
const tagOf = (
  errorClass: new (fields: object) => Error,
): { tag: string; schema: boolean } | undefined => {
  const fields = (errorClass as { fields?: { _tag?: { ast?: { literal?: unknown } } } }).fields
  const literal = fields?._tag?.ast?.literal
  if (typeof literal === "string") return { tag: literal, schema: true }
  try {
    const tag = (new errorClass({}) as { _tag?: unknown })._tag
    return typeof tag === "string" ? { tag, schema: false } : undefined
  } catch {
    return undefined
  }
}

/** Walks a module's exports (namespaces included, a few levels deep) for error classes. */
export const errorClasses = (entry: string, module: object): Array<ErrorClass> => {
  const found: Array<ErrorClass> = []
  const seen = new Set<unknown>()
  const walk = (value: unknown, path: string, depth: number): void => {
    if (value === null || (typeof value !== "object" && typeof value !== "function")) return
    if (seen.has(value) || depth > 4) return
    seen.add(value)
    if (typeof value === "function") {
      if (value.prototype instanceof Error) {
        const tagged = tagOf(value as new (fields: object) => Error)
        if (tagged !== undefined) found.push({ package: packageOf(entry), path, ...tagged })
      }
      return
    }
    for (const key of Object.keys(value)) {
      walk((value as Record<string, unknown>)[key], path === "" ? key : `${path}.${key}`, depth + 1)
    }
  }
  walk(module, "", 0)
  return found
}

/** Tags defined by more than one package, each with every class that defines it. */
export const duplicateTags = (classes: ReadonlyArray<ErrorClass>): Map<string, Array<string>> => {
  const byTag = new Map<string, Map<string, string>>()
  for (const c of classes) {
    const owners = byTag.get(c.tag) ?? new Map<string, string>()
    if (!owners.has(c.package)) owners.set(c.package, `${c.package} ${c.path}`)
    byTag.set(c.tag, owners)
  }
  const duplicates = new Map<string, Array<string>>()
  for (const [tag, owners] of byTag) {
    if (owners.size > 1) duplicates.set(tag, [...owners.values()])
  }
  return duplicates
}

/**
 * Known and not yet fixed, each with who is to fix it. A listed entry that no longer occurs
 * fails the test too, so the list only shrinks. Nothing may be added to it.
 */
const pendingDuplicateTags: Record<string, string> = {}

/** Exported tagged errors that are not yet `Schema.TaggedError`s, with who is to convert them. */
const pendingNotSchema: Record<string, string> = {}

describe("error tags", () => {
  it("every exported error class is a Schema.TaggedError with a tag no other package defines", async () => {
    const classes: Array<ErrorClass> = []
    for (const [entry, load] of Object.entries(entries)) {
      classes.push(...errorClasses(entry, await load()))
    }
    // The walk finds what it should: the transport's errors are there, as Schema classes.
    expect(classes).toContainEqual({
      package: "@understudy/transport",
      path: "TransportError.ListenError",
      tag: "ListenError",
      schema: true,
    })
    const duplicates = duplicateTags(classes)
    expectOnlyListed(
      [...duplicates.keys()],
      Object.keys(pendingDuplicateTags),
      `a _tag defined by two packages: ${[...duplicates].map(([tag, owners]) => `${tag} by ${owners.join(" and ")}`).join("; ")}`,
    )

    const notSchema = classes
      .filter((c) => !c.schema && c.package !== "@understudy/testkit")
      .map((c) => `${c.package} ${c.path}`)
    expectOnlyListed(
      notSchema,
      Object.keys(pendingNotSchema),
      "an exported error that is not a Schema.TaggedError",
    )
  })

  it("the duplicate check names both packages of a tag defined twice", () => {
    class Mine extends Error {
      readonly _tag = "ListenError"
    }
    const classes = [
      {
        package: "@understudy/transport",
        path: "TransportError.ListenError",
        tag: "ListenError",
        schema: true,
      },
      ...errorClasses("@understudy/other", { Errors: { Mine } }),
    ]
    expect(duplicateTags(classes)).toEqual(
      new Map([
        [
          "ListenError",
          ["@understudy/transport TransportError.ListenError", "@understudy/other Errors.Mine"],
        ],
      ]),
    )
  })
})

/**
 * Unbounded queues a reviewer has checked cannot grow without bound, with the reason.
 * Key: `path:code` (the line's trimmed text, so the entry survives edits elsewhere in the file).
 */
const provenBounded: Record<string, string> = {
  "packages/transport/src/NodeTransport.ts:const sockets = yield* Queue.unbounded<net.Socket>()":
    "offered only while pendingHandshakes < maxPendingHandshakes (1,024); other sockets are destroyed",
  "packages/transport/src/SimNet.ts:const handshaking = yield* Queue.unbounded<SimEndpoint>()":
    "the simulated listener accepts only while hasRoom() (size < backlog)",
  "packages/transport/src/internal/connection.ts:const inbound = yield* Queue.make<Batch<A>, Cause.Done>()":
    "bounded in bytes: past receiveBufferBytes the link is paused until the reader consumes",
  "packages/store/src/RemoteStore.ts:Stream.callback<WatchEvent, Compacted | Unavailable | InvalidRequest>(":
    "bufferSize watchQueuedEventsMax; what it cannot take ends the watch with Unavailable",
}

/**
 * A queue, PubSub or Mailbox made with no capacity; or a `Stream.callback` (its queue is
 * unbounded unless given a `bufferSize`, which this line-based scan cannot see: each one is
 * listed in `provenBounded`).
 */
const unboundedPattern =
  /\b(?:(?:PubSub|Queue|Mailbox)\.unbounded\b|(?:Queue|PubSub|Mailbox)\.make(?:<[^>()]*(?:<[^>()]*>[^>()]*)*>)?\(\s*\)|(?:Stream|Channel)\.callback(?:Array)?\b)/

export const unboundedQueues = (source: string): Array<string> =>
  source
    .split("\n")
    .map((line) => line.trim())
    .filter(
      (line) => !line.startsWith("//") && !line.startsWith("*") && unboundedPattern.test(line),
    )

/** `.ts` files under `dir`, at most `limit` of them (the scan is bounded). */
const sourceFiles = (dir: string, limit: number): Array<string> => {
  const files: Array<string> = []
  const visit = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      if (files.length >= limit) return
      const path = Path.join(d, name)
      if (statSync(path).isDirectory()) visit(path)
      else if (name.endsWith(".ts")) files.push(path)
    }
  }
  visit(dir)
  return files
}

/**
 * The published packages' source files (the testkit is private: test code, not a public
 * surface), at most `limit` per package: the one walk the limit and duration checks share.
 */
const publishedSources = (limit = 2_000): Array<string> =>
  readdirSync(Path.join(repository, "packages"))
    .sort()
    .filter((name) => name !== "testkit")
    .map((name) => Path.join(repository, "packages", name, "src"))
    .filter((src) => statSync(src, { throwIfNoEntry: false })?.isDirectory() === true)
    .flatMap((src) => sourceFiles(src, limit))

/** Findings by file, as `file: name` lines for `expectOnlyListed`. */
const flat = (byFile: Record<string, ReadonlyArray<string>>): Array<string> =>
  Object.entries(byFile).flatMap(([file, names]) => names.map((name) => `${file}: ${name}`))

describe("bounded queues", () => {
  it("no unbounded Queue, PubSub, Mailbox or Stream.callback in packages/*/src outside the proven-bounded list", () => {
    const limit = 2_000
    const found: Array<string> = []
    let scanned = 0
    for (const name of readdirSync(Path.join(repository, "packages")).sort()) {
      const src = Path.join(repository, "packages", name, "src")
      if (!statSync(src, { throwIfNoEntry: false })?.isDirectory()) continue
      for (const file of sourceFiles(src, limit)) {
        scanned++
        const relative = Path.relative(repository, file)
        for (const code of unboundedQueues(readFileSync(file, "utf8")))
          found.push(`${relative}:${code}`)
      }
    }
    expect(scanned, "the scan reached the sources").toBeGreaterThan(50)
    expect(scanned, "the scan is bounded").toBeLessThan(limit * 10)
    expectOnlyListed(
      found,
      Object.keys(provenBounded),
      "unbounded: give it a capacity, or list it in provenBounded with why it cannot grow",
    )
  })

  it("the pattern finds every unbounded form and no bounded one", () => {
    expect(
      unboundedQueues(
        [
          "const a = yield* PubSub.unbounded<Event>()",
          "const b = yield* Queue.unbounded<number>()",
          "const c = yield* Queue.make<Batch<A>, Cause.Done>()",
          "const d = yield* Mailbox.make<string>()",
          "const e = yield* Mailbox.unbounded()",
          "Stream.callback<number>((queue) =>",
          "const f = yield* Queue.bounded<number>(16)",
          "const g = yield* Queue.make<Received, Cause.Done>({ capacity: 8 })",
          "const h = yield* PubSub.sliding<Event>(1_024)",
          "const i = yield* Mailbox.make<string>(64)",
          "// a comment about Queue.unbounded<number>()",
        ].join("\n"),
      ),
    ).toEqual([
      "const a = yield* PubSub.unbounded<Event>()",
      "const b = yield* Queue.unbounded<number>()",
      "const c = yield* Queue.make<Batch<A>, Cause.Done>()",
      "const d = yield* Mailbox.make<string>()",
      "const e = yield* Mailbox.unbounded()",
      "Stream.callback<number>((queue) =>",
    ])
  })
})

/**
 * Limits are named for what they limit, then the unit, then `Max` (`windowBytesMax`,
 * `timeoutMsMax`), not `maxWindowBytes` or `rtoMaxMs`. Known and not yet renamed, by file, each
 * with who is to rename it; a listed name that is gone fails the test, so the list only shrinks.
 */
const pendingLimitNames: Record<string, ReadonlyArray<string>> = {
  // SimNet's uniform latency (minMs..maxMs): the upper end of a range to draw from, not a
  // limit; left for a rename of both ends together (e.g. uniform(fromMs, toMs)).
  "packages/transport/src/SimNet.ts": ["maxMs"],
}

/** Names that mirror someone else's (a kernel struct's field), with where they come from. */
const foreignLimitNames: Record<string, ReadonlyArray<string>> = {
  // struct tcp_repair_window in <linux/tcp.h>.
  "packages/checkpoint/src/internal/tcpRepair/kernelTcp.ts": ["maxWindow"],
}

/** A field named `maxX`, or with a unit after `Max` (`rtoMaxMs`). */
const limitNamePattern = /readonly (max[A-Z]\w*|\w+Max(?:Ms|Us|Ns|Seconds|Bytes))\??:/g

export const misnamedLimits = (source: string): Array<string> => [
  ...new Set(Array.from(source.matchAll(limitNamePattern), (match) => match[1] as string)),
]

describe("limit names", () => {
  it("limits in the published packages' sources are named xUnitMax, outside the pending list", () => {
    const found: Record<string, Array<string>> = {}
    for (const file of publishedSources()) {
      const names = misnamedLimits(readFileSync(file, "utf8")).sort()
      if (names.length > 0) found[Path.relative(repository, file)] = names
    }
    expectOnlyListed(
      flat(found),
      flat({ ...pendingLimitNames, ...foreignLimitNames }),
      "a limit not named xUnitMax (e.g. frameBytesMax)",
    )
  })

  it("the pattern finds maxX and xMaxUnit, not xUnitMax", () => {
    expect(
      misnamedLimits(
        "readonly maxFrameBytes?: number\nreadonly rtoMaxMs: number\n" +
          "readonly windowBytesMax?: number\nreadonly timeoutMsMax: number\nreadonly maximum: number",
      ),
    ).toEqual(["maxFrameBytes", "rtoMaxMs"])
  })
})

/**
 * Durations in a published option are `Duration.Input`s named for what they are (`timeout`,
 * `linger`), decoded by Schema: a field ending in `Ms` that an exported `...Options` interface
 * or type takes is a duration in plain milliseconds. Known and not yet converted, by the file of
 * the `...Options` declaration, each with its owner.
 */
const pendingMsOptions: Record<string, ReadonlyArray<string>> = {}

/** The compiler options every package is built with (`tsconfig.base.json`). */
const compilerOptions = (): ts.CompilerOptions => {
  const parsed = ts.getParsedCommandLineOfConfigFile(
    Path.join(repository, "tsconfig.base.json"),
    { noEmit: true },
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
        throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n"))
      },
    },
  )
  if (parsed === undefined) throw new Error("tsconfig.base.json: not read")
  return parsed.options
}

/**
 * Types a field may hold that are values a package makes for the user, not options the user
 * writes, with what makes them; their fields are not options. Key: `package: Type` (the type
 * is met in the package's sources or in its built `dist`).
 */
const madeValues: Record<string, string> = {
  "machine: Authentication": "made by Authentication.keyed(key, options) or insecure",
}

/**
 * Whether a field's type may hold options: an inline object type, or one declared in this
 * repository's sources that is not in `madeValues` (not Effect's or the standard library's).
 */
const mayHoldOptions = (type: ts.Type): boolean => {
  const symbol = type.aliasSymbol ?? type.getSymbol()
  const files = (symbol?.getDeclarations() ?? []).map((d) => d.getSourceFile().fileName)
  if (files.some((file) => file.includes("/node_modules/"))) return false
  const packages = files.map((file) => /\/packages\/([^/]+)\//.exec(file)?.[1])
  return !packages.some((name) => `${name}: ${symbol?.name}` in madeValues)
}

/**
 * By file, the fields ending in `Ms` that the exported `...Options` interfaces and types of
 * `files` take, as the type checker sees them: fields inherited (`extends`, `Omit<...>`, `&`)
 * count, and so do the fields of the object types a field holds (`keepAlive: { intervalMs }`,
 * `lease?: Lease`; see `mayHoldOptions`). A callback's parameters are what the package
 * reports (`onResumed({ gapMs })`), not options: they are not looked into. `@internal`
 * declarations are left out.
 */
export const msOptions = (
  program: ts.Program,
  files: ReadonlyArray<string>,
): Record<string, Array<string>> => {
  const checker = program.getTypeChecker()
  const found: Record<string, Array<string>> = {}
  for (const file of files) {
    const source = program.getSourceFile(file)
    if (source === undefined) throw new Error(`${file}: not in the program`)
    const names = new Set<string>()
    const seen = new Set<ts.Type>()
    const walk = (type: ts.Type, depth: number): void => {
      if (depth > 4 || seen.has(type)) return
      seen.add(type)
      if (depth > 0 && !mayHoldOptions(type)) return
      if (type.isUnionOrIntersection()) {
        for (const member of type.types) walk(member, depth)
        return
      }
      const isObject = (type.flags & ts.TypeFlags.Object) !== 0
      if (!isObject || type.getCallSignatures().length > 0) return
      for (const property of checker.getPropertiesOfType(type)) {
        if (/\wMs$/.test(property.name)) names.add(property.name)
        walk(checker.getTypeOfSymbol(property), depth + 1)
      }
    }
    for (const statement of source.statements) {
      if (!ts.isInterfaceDeclaration(statement) && !ts.isTypeAliasDeclaration(statement)) continue
      const exported = statement.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)
      const internal = ts.getJSDocTags(statement).some((tag) => tag.tagName.text === "internal")
      if (!/Options$/.test(statement.name.text) || !exported || internal) continue
      walk(checker.getTypeAtLocation(statement.name), 0)
    }
    if (names.size > 0) found[file] = [...names].sort()
  }
  return found
}

/** A program of `sources` (file name to text) alone, for checking the scan on a planted case. */
const programOf = (sources: Record<string, string>): ts.Program => {
  const options = compilerOptions()
  const host = ts.createCompilerHost(options)
  const { fileExists, readFile, getSourceFile } = host
  const planted = (name: string) => sources[Path.resolve(name)]
  host.fileExists = (name) => planted(name) !== undefined || fileExists.call(host, name)
  host.readFile = (name) => planted(name) ?? readFile.call(host, name)
  host.getSourceFile = (name, language, ...rest) => {
    const text = planted(name)
    return text === undefined
      ? getSourceFile.call(host, name, language, ...rest)
      : ts.createSourceFile(name, text, language)
  }
  return ts.createProgram(Object.keys(sources), options, host)
}

describe("durations", () => {
  it("published options take durations as Duration.Input, not ...Ms numbers, outside the pending list", () => {
    // internal/ is not exported; its interfaces count where a public one inherits them.
    const files = publishedSources().filter((f) => !f.includes(`${Path.sep}internal${Path.sep}`))
    const byPath = msOptions(ts.createProgram(files, compilerOptions()), files)
    const found = Object.fromEntries(
      Object.entries(byPath).map(([file, names]) => [Path.relative(repository, file), names]),
    )
    expect(files.length, "the scan reached the sources").toBeGreaterThan(50)
    expectOnlyListed(
      flat(found),
      flat(pendingMsOptions),
      'a duration option in milliseconds: make it a Duration.Input (e.g. timeout: "2 seconds")',
    )
  }, 120_000)

  it("the scan finds ...Ms fields an Options type takes, inherited and nested ones too, and nothing else", () => {
    const file = Path.join(repository, "planted", "options.ts")
    const source = [
      "interface Timings { readonly detectionPeriodMs: number; readonly floorDelayMs?: number }",
      "interface Lease { readonly durationMs?: number; readonly clockDriftMax?: number }",
      'export interface GroupOptions extends Omit<Timings, "floorDelayMs"> {',
      "  /** Default 1,000 ms: `lingerMs`. */",
      "  readonly lease?: Lease",
      "  readonly keepAlive?: { readonly intervalMs: number; readonly timeout: string } | false",
      "  readonly handshakeTimeoutMs?: number",
      "  readonly onResumed?: (event: { readonly gapMs: number }) => void",
      "}",
      "export type FacadeOptions = GroupOptions & { readonly lingerMs?: number }",
      "interface HiddenOptions { readonly sweepMs: number }",
      "export interface Event { readonly atMs: number }",
      "/** @internal */",
      "export interface ResolvedOptions { readonly retryMs: number }",
    ].join("\n")
    const found = msOptions(programOf({ [file]: source }), [file])
    expect(found).toEqual({
      [file]: ["detectionPeriodMs", "durationMs", "handshakeTimeoutMs", "intervalMs", "lingerMs"],
    })
    // And the check fails on it: a finding not in the pending list.
    expect(() => expectOnlyListed(flat(found), [], "planted")).toThrow(/planted/)
  }, 60_000)
})

describe("facades", () => {
  it("each package with a Promise facade exports it at the top level as createX, and no Facade namespace", async () => {
    const facades: Record<string, ReadonlyArray<string>> = {}
    for (const name of readdirSync(Path.join(repository, "packages")).sort()) {
      if (
        !statSync(Path.join(repository, "packages", name, "src", "Facade.ts"), {
          throwIfNoEntry: false,
        })
      )
        continue
      const entry = `@understudy/${name}` as keyof typeof entries
      const module: Record<string, unknown> = await entries[entry]()
      expect(
        module,
        `${entry} exports its facade's functions, not a Facade namespace`,
      ).not.toHaveProperty("Facade")
      facades[entry] = Object.keys(module)
        .filter((key) => /^create[A-Z]/.test(key) && typeof module[key] === "function")
        .sort()
    }
    expect(facades).toEqual({
      "@understudy/checkpoint": ["createClient", "createServer"],
      "@understudy/heartbeat-pool": ["createClient", "createClientGroup", "createServer"],
      "@understudy/multihome": ["createEndpoint"],
      "@understudy/port-election": ["createInstance"],
      "@understudy/staggered-election": ["createServer"],
      "@understudy/store": ["createStore", "createStoreServer"],
    })
  })
})
