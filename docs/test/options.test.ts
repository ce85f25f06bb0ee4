/**
 * Every package page's options tables against the package's option interfaces: every option
 * of an interface a user passes is named in a table of the page's "Options" section (with its
 * default and when to change it), and every option a table names exists in the package, so
 * neither can drift from the other when an option is added or renamed.
 */
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"

const root = join(import.meta.dirname, "..", "..")
const read = (path: string) => readFileSync(join(root, path), "utf8")

/** The `.ts` files under a package's src/, recursively. */
const sources = (pkg: string, directory = ""): Array<string> =>
  readdirSync(join(root, "packages", pkg, "src", directory), { withFileTypes: true }).flatMap(
    (entry) =>
      entry.isDirectory()
        ? sources(pkg, join(directory, entry.name))
        : entry.name.endsWith(".ts")
          ? [join(directory, entry.name)]
          : [],
  )

/** The keys of `interface NAME ... { ... }` in a source file (to its first closing line). */
const keysOf = (pkg: string, file: string, name: string): Array<string> => {
  const text = read(join("packages", pkg, "src", file))
  const start = text.search(new RegExp(`export interface ${name}\\b`))
  if (start < 0) throw new Error(`no interface ${name} in ${pkg}/src/${file}`)
  const body = text.slice(start, text.indexOf("\n}\n", start))
  return [...body.matchAll(/^ {2}readonly (\w+)\??:/gm)].map((match) => match[1]!)
}

/** Every backticked name in the first column of the tables of the page's "Options" section. */
const documented = (pkg: string): Set<string> => {
  const page = read(join("docs", `${pkg}.md`))
  const start = page.indexOf("\n## Options\n")
  if (start < 0) throw new Error(`docs/${pkg}.md has no Options section`)
  const end = page.indexOf("\n## ", start + 1)
  const names = new Set<string>()
  for (const row of page
    .slice(start, end < 0 ? undefined : end)
    .split("\n")
    .filter((line) => line.startsWith("| `"))) {
    for (const match of row.split("|")[1]!.matchAll(/`([\w.]+)`/g)) names.add(match[1]!)
  }
  return names
}

interface Page {
  /** The option interfaces a user passes: [file under src/, interface name]. */
  readonly interfaces: ReadonlyArray<readonly [string, string]>
  /** Keys that are not tuning options (callbacks, plumbing, a renamed parent's keys). */
  readonly notOptions?: ReadonlyArray<string>
}

const pages: Record<string, Page> = {
  "port-election": {
    interfaces: [
      ["Election.ts", "ElectionOptions"],
      ["Facade.ts", "InstanceOptions"],
    ],
  },
  "staggered-election": {
    interfaces: [
      ["ServerGroup.ts", "Options"],
      ["Facade.ts", "ServerOptions"],
      ["Client.ts", "ClientOptions"],
    ],
  },
  "heartbeat-pool": {
    interfaces: [
      ["Server.ts", "Options"],
      ["Client.ts", "Options"],
      ["ClientGroup.ts", "Options"],
    ],
  },
  checkpoint: {
    interfaces: [
      ["ObjectSession.ts", "ServerOptions"],
      ["CheckpointStore.ts", "CheckpointStoreOptions"],
      ["ObjectSession.ts", "ClientOptions"],
      ["ObjectBundle.ts", "ConnectOptions"],
      ["Facade.ts", "CreateServerOptions"],
      ["Facade.ts", "CreateClientOptions"],
    ],
    notOptions: ["onResumed", "dir", "source", "store", "address", "backend"],
  },
  multihome: {
    interfaces: [
      ["internal/cluster/models.ts", "Options"],
      ["Endpoint.ts", "Options"],
      ["Endpoint.ts", "AssociationOptions"],
      // What AssociationOptions takes of the machine's config as it is (the `Ms` ones are
      // Durations there; `localPort` is the endpoint's `port`).
      ["internal/association/config.ts", "Config"],
      ["Endpoint.ts", "ConnectOptions"],
      ["Facade.ts", "CreateEndpointOptions"],
    ],
    notOptions: [
      "localPort",
      "rtoInitialMs",
      "rtoMinMs",
      "rtoMsMax",
      "heartbeatIntervalMs",
      "validCookieLifeMs",
      "sackDelayMs",
    ],
  },
  transport: {
    interfaces: [
      ["Options.ts", "ConnectionOptions"],
      ["Datagram.ts", "BindOptions"],
      ["SimNet.ts", "SimNetOptions"],
    ],
  },
  store: {
    interfaces: [
      ["MemoryStore.ts", "MemoryStoreOptions"],
      ["StoreServer.ts", "StoreServerOptions"],
      ["RemoteStore.ts", "RemoteStoreOptions"],
      ["EtcdStore.ts", "EtcdStoreOptions"],
      ["NameServer.ts", "RegisterOptions"],
      ["Facade.ts", "CreateStoreOptions"],
      ["Facade.ts", "CreateStoreServerOptions"],
    ],
  },
  machine: {
    interfaces: [
      ["Runner.ts", "Settings"],
      ["Runner.ts", "Options"],
      ["Runner.ts", "ConnectionOptions"],
    ],
    notOptions: ["onEvent", "closed"],
  },
}

/** Every Promise facade's own two options (`Observability.FacadeOptions`, in transport). */
const facadeOptions = keysOf("transport", "Observability.ts", "FacadeOptions")

describe("options tables", () => {
  it("every package with options has its page checked", () => {
    const withOptions = readdirSync(join(root, "packages")).filter((pkg) =>
      sources(pkg).some((file) =>
        /export interface \w*Options\b/.test(read(join("packages", pkg, "src", file))),
      ),
    )
    // The test kit is not published: it has no page.
    expect(withOptions.filter((pkg) => pkg !== "testkit").sort()).toEqual(Object.keys(pages).sort())
  })

  for (const [pkg, page] of Object.entries(pages)) {
    describe(`docs/${pkg}.md`, () => {
      const names = documented(pkg)

      it("names every option of the package's option interfaces", () => {
        const notOptions = new Set(page.notOptions ?? [])
        const missing = page.interfaces.flatMap(([file, name]) =>
          keysOf(pkg, file, name)
            .filter(
              (option) =>
                !notOptions.has(option) &&
                !names.has(option) &&
                ![...names].some((named) => named.startsWith(`${option}.`)),
            )
            .map((option) => `${name}.${option}`),
        )
        expect(missing).toEqual([])
      })

      it("names no option the package does not have", () => {
        const everything = sources(pkg)
          .map((file) => read(join("packages", pkg, "src", file)))
          .join("\n")
        // A name is an option (a key, `name:` or `name?:`), a nested one (`policy.everyBytes`:
        // its last part), a constructor named beside the options (`createServer`), or a
        // facade's `logger` / `layer`.
        const unknown = [...names].filter((named) => {
          const last = named.split(".").at(-1)!
          if (facadeOptions.includes(last)) return false
          return !new RegExp(`(\\b${last}\\??:|export const ${last}\\b)`).test(everything)
        })
        expect(unknown).toEqual([])
        expect(names.size).toBeGreaterThan(3)
      })
    })
  }
})
