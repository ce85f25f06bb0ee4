/**
 * Starting this app as OS processes for its process tests (and the root workspace's): the
 * testkit's `ServerGroupProcesses` with this app's entry.
 */
import { fileURLToPath } from "node:url"
import type { JsonLinesProcess } from "@understudy/testkit"
import { ServerGroupProcesses } from "@understudy/testkit"

const main = fileURLToPath(new URL("../../src/main.ts", import.meta.url))

export type Group = ServerGroupProcesses.Group
export type Server = ServerGroupProcesses.Server

/** One `server-group` process. */
export const spawn = (
  args: ReadonlyArray<string>,
  linesMax?: number,
): JsonLinesProcess.JsonLinesProcess => ServerGroupProcesses.spawn(main, args, linesMax)

/** `server-group nameserver` on a port the OS picks. */
export const startNameServer = (
  readyTimeoutMs?: number,
  args?: ReadonlyArray<string>,
): Promise<{ readonly proc: JsonLinesProcess.JsonLinesProcess; readonly store: string }> =>
  ServerGroupProcesses.startNameServer(main, readyTimeoutMs, args)

/** The group `ids` using the name server at `store` (see `ServerGroupProcesses.group`). */
export const group = (
  options: Omit<Parameters<typeof ServerGroupProcesses.group>[0], "program">,
): Promise<Group> => ServerGroupProcesses.group({ program: main, ...options })
