/**
 * The options tables of docs/heartbeat-pool.md: every option of the server and the client
 * (Promise facade's `logger` and `layer` included) has a row, no row names an option that does
 * not exist, and every numeric default shown is the one the code applies.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import * as Config from "../src/Config.ts"
import * as Server from "../src/Server.ts"

const read = (path: string) => readFileSync(join(import.meta.dirname, "..", path), "utf8")
const page = read("../../docs/heartbeat-pool.md")

/** The rows of the table that follows the line starting with `heading`: option → default. */
const table = (heading: string): Map<string, string> => {
  const lines = page
    .slice(page.indexOf(`\n${heading}`))
    .split("\n")
    .slice(1)
  const rows = new Map<string, string>()
  let started = false
  for (const line of lines) {
    if (!line.startsWith("|")) {
      if (started) break
      continue
    }
    started = true
    const [names, value] = line
      .split("|")
      .slice(1, 3)
      .map((cell) => cell.trim())
    for (const name of names!.matchAll(/`([^`]+)`/g)) rows.set(name[1]!, value!)
  }
  rows.delete("option")
  return rows
}

/** The fields of `export interface <name> {…}` in a source file. */
const fields = (path: string, name: string): Array<string> => {
  const source = read(path)
  const start = source.indexOf(`export interface ${name} {`)
  const body = source.slice(start, source.indexOf("\n}", start))
  return [...body.matchAll(/^ {2}readonly (\w+)\??:/gm)].map((match) => match[1]!)
}

const facade = ["logger", "layer"]
const number = (text: string) =>
  text.endsWith(" KiB")
    ? Number(text.slice(0, -4)) * 1024
    : text.endsWith(" MiB")
      ? Number(text.slice(0, -4)) * 1024 * 1024
      : text.endsWith(" ms")
        ? Number(text.slice(0, -3).replaceAll(",", ""))
        : Number(text.replaceAll(",", ""))

describe("docs/heartbeat-pool.md options", () => {
  const servers = table("Servers (")
  const clients = table("Clients (")

  it("names every server and client option, and only those", () => {
    const timing = fields("src/Server.ts", "Timing").map((field) => `timing.${field}`)
    const server = fields("src/Server.ts", "Options").filter((field) => field !== "timing")
    expect([...servers.keys()].sort()).toEqual([...server, ...timing, ...facade].sort())
    expect([...clients.keys()].sort()).toEqual(
      [...fields("src/Client.ts", "Options"), ...facade].sort(),
    )
  })

  it("shows the defaults the code applies", () => {
    const server = Result.getOrThrow(Config.decodeServer({}))
    const client = Result.getOrThrow(Config.decodeClient({}))
    const expected: Record<string, number> = {
      messageBytesMax: server.messageBytesMax,
      clientsPerServerMax: server.clientsPerServerMax,
      seatsPerClientMax: server.seatsPerClientMax,
      pendingReservationsMax: server.pendingReservationsMax,
      shareSeatsMax: server.shareSeatsMax,
      clientReceiveBufferBytes: server.clientReceiveBufferBytes,
    }
    for (const [field, value] of Object.entries(Server.defaultTiming))
      expected[`timing.${field}`] = value
    for (const [option, value] of Object.entries(expected))
      expect([option, number(servers.get(option)!)]).toEqual([option, value])
    for (const [option, value] of [
      ["seats", client.seats],
      ["heartbeatInterval", client.heartbeatIntervalMs],
      ["missLimit", client.missLimit],
    ] as const)
      expect([option, number(clients.get(option)!)]).toEqual([option, value])
  })
})
