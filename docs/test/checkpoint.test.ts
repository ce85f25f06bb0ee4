/**
 * The checkpoint page's options tables against the package's option interfaces: every
 * option the tables name exists, and every option of a server's and a client's interface
 * is in a table, so neither can drift from the other.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"

const root = join(import.meta.dirname, "..", "..")
const read = (path: string) => readFileSync(join(root, path), "utf8")
const source = (file: string) => read(join("packages/checkpoint/src", file))

/** The keys of `interface NAME ... { ... }` in a source file (to its first closing line). */
const keysOf = (file: string, name: string): Array<string> => {
  const text = source(file)
  const start = text.indexOf(`export interface ${name} `)
  if (start < 0) throw new Error(`no interface ${name} in ${file}`)
  const body = text.slice(start, text.indexOf("\n}\n", start))
  return [...body.matchAll(/^ {2}readonly (\w+)\??:/gm)].map((match) => match[1]!)
}

/** Every backticked name in the first column of the page's options tables. */
const documented = (): Set<string> => {
  const page = read("docs/checkpoint.md")
  const section = page.slice(
    page.indexOf("## Options"),
    page.indexOf("\n## ", page.indexOf("## Options") + 1),
  )
  const names = new Set<string>()
  for (const row of section.split("\n").filter((line) => line.startsWith("| `"))) {
    const first = row.split("|")[1]!
    for (const match of first.matchAll(/`([\w.]+)`/g)) names.add(match[1]!)
  }
  return names
}

describe("docs/checkpoint.md options", () => {
  const names = documented()

  it("the tables name every option of a server, its store and its clients", () => {
    const options = [
      ...keysOf("ObjectSession.ts", "ServerOptions"),
      ...keysOf("CheckpointStore.ts", "CheckpointStoreOptions"),
      ...keysOf("ObjectSession.ts", "ClientOptions"),
      ...keysOf("ObjectBundle.ts", "ConnectOptions"),
      ...keysOf("Facade.ts", "CreateServerOptions"),
      ...keysOf("Facade.ts", "CreateClientOptions"),
    ]
    // Callbacks and the Promise facade's own plumbing are not tuning options.
    const notOptions = new Set(["onResumed", "dir", "source", "store", "address", "backend"])
    const missing = options.filter(
      (option) =>
        !notOptions.has(option) &&
        !names.has(option) &&
        ![...names].some((name) => name.startsWith(`${option}.`)),
    )
    expect(missing).toEqual([])
  })

  it("every option the tables name exists in the package", () => {
    const everything = [
      "ObjectSession.ts",
      "CheckpointStore.ts",
      "ObjectBundle.ts",
      "Facade.ts",
      "Policy.ts",
      "Discovery.ts",
    ]
      .map(source)
      .join("\n")
    const unknown = [...names].filter((name) => {
      const [head, field] = name.split(".")
      // `Discovery.advertise`, `policy.everyBytes`: the module's export, or the policy's key.
      if (field !== undefined)
        return head === "policy"
          ? !new RegExp(`^ {2}${field}: Schema`, "m").test(source("Policy.ts"))
          : !new RegExp(`export const ${field}\\b`).test(source(`${head}.ts`))
      // A constructor named beside an option (`createServer`): not an option itself.
      if (new RegExp(`export const ${head}\\b`).test(everything)) return false
      return !new RegExp(`readonly ${head}\\??:`).test(everything)
    })
    expect(unknown).toEqual([])
    expect(names.size).toBeGreaterThan(15)
  })
})
