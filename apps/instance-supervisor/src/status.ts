/**
 * `instance-supervisor status --name N`: prints the registry of election N. It joins as an
 * instance that holds and waits for nothing, reads the registry, and leaves; an instance
 * that finds nobody else (and so becomes supervisor) prints "no instances".
 *
 * @since 0.1.0
 */
import { Election, type Secret, type SocketDirectory } from "@understudy/port-election"
import { Address, NodeTransport } from "@understudy/transport"
import { Clock, Effect } from "effect"
import {
  complain,
  describeElectionError,
  electionOptions,
  exitCode,
  kindKey,
  type StatusInvocation,
} from "./common.ts"

/** One instance as `status` shows it. @since 0.1.0 @category models */
export interface InstanceRow {
  readonly instanceId: string
  readonly role: "supervisor" | "subordinate"
  readonly pid: number
  readonly state: "holding" | "waiting" | "idle"
  readonly startedAtMs: number
  readonly joinedAtMs: number
  readonly command: string
}

/** @since 0.1.0 @category models */
export interface Registry {
  readonly name: string
  readonly address: string
  readonly slots: number | undefined
  readonly instances: ReadonlyArray<InstanceRow>
}

/** How long a query that found itself supervisor waits for instances re-registering after a
 * failover before it says there are none. */
const settleMs = 200
/** How long a subordinate query waits for the registry that includes itself. */
const registryWaitMs = 2_000
const pollMs = 10

/** Reads the registry of the election an invocation names. @since 0.1.0 @category running */
export const readRegistry = (
  invocation: StatusInvocation,
): Effect.Effect<
  Registry,
  Election.ElectionError | Secret.SecretError | SocketDirectory.SocketDirectoryError
> =>
  Effect.scoped(
    Effect.gen(function* () {
      const { target } = invocation
      const options = yield* electionOptions(target, { [kindKey]: "status" })
      const election = yield* Election.make(options).pipe(
        // The options come from electionOptions, never out of range: a bug, not a user error.
        Effect.catchTag("ElectionConfigError", (error) => Effect.die(error)),
        Effect.provide(NodeTransport.layer),
      )
      const self = election.instanceId
      const role = yield* election.role
      let members: ReadonlyArray<Election.Member> = []
      if (role._tag === "Supervisor") {
        // Nobody held the address, unless we won a rebind in the middle of a failover: then
        // the others re-register within milliseconds.
        yield* Effect.sleep(settleMs)
        members = yield* election.members
      } else {
        // The Welcome comes before the first registry broadcast: wait for one that has us.
        const deadline = (yield* Clock.currentTimeMillis) + registryWaitMs
        members = yield* election.members
        while (
          !members.some((m) => m.instanceId === self) &&
          (yield* Clock.currentTimeMillis) < deadline
        ) {
          yield* Effect.sleep(pollMs)
          members = yield* election.members
        }
      }
      const instances = members
        .filter((m) => m.instanceId !== self && m.metadata[kindKey] !== "status")
        .map(
          (m): InstanceRow => ({
            instanceId: m.instanceId,
            role: m.role,
            pid: m.pid,
            state: m.holdings.some((h) => h.resource === target.name && h.permits > 0)
              ? "holding"
              : m.waiting.includes(target.name)
                ? "waiting"
                : "idle",
            startedAtMs: m.startedAtMs,
            joinedAtMs: m.joinedAtMs,
            command: m.metadata.command ?? "",
          }),
        )
      const slotsText = members.find((m) => m.metadata.slots !== undefined)?.metadata.slots
      return {
        name: target.name,
        address: Address.format(options.address),
        slots: slotsText === undefined ? undefined : Number(slotsText),
        instances,
      }
    }),
  )

const shortId = (instanceId: string): string => {
  // Ids are `<pid>-<uuid>`: the pid and the UUID's first group tell instances apart.
  const match = /^(\d+)-([0-9a-f]{8})/.exec(instanceId)
  return match === null ? instanceId.slice(0, 24) : `${match[1]}-${match[2]}`
}

const pad = (text: string, width: number) => text.padEnd(width)

/** One table row per instance: control characters (a script's newlines) are shown escaped. */
const printable = (text: string): string =>
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
  text.replace(/[\u0000-\u001f\u007f]/g, (c) =>
    c === "\n" ? "\\n" : c === "\t" ? "\\t" : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  )

/** Renders the registry as a table for people. @since 0.1.0 @category formatting */
export const formatRegistry = (registry: Registry, nowMs: number): string => {
  if (registry.instances.length === 0) return `${registry.name}: no instances (${registry.address})`
  const holding = registry.instances.filter((i) => i.state === "holding").length
  const waiting = registry.instances.filter((i) => i.state === "waiting").length
  const header = `${registry.name}: ${registry.instances.length} instances, ${holding}${
    registry.slots === undefined ? "" : ` of ${registry.slots}`
  } slots held, ${waiting} waiting (${registry.address})`
  const rows = [
    ["INSTANCE", "ROLE", "PID", "STATE", "STARTED", "COMMAND"],
    ...registry.instances.map((i) => [
      shortId(i.instanceId),
      i.role,
      String(i.pid),
      i.state,
      `${new Date(i.startedAtMs).toISOString()} (${((nowMs - i.startedAtMs) / 1000).toFixed(1)} s ago)`,
      printable(i.command),
    ]),
  ]
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
  const lines = rows.map((row) =>
    row
      .map((cell, column) => (column === row.length - 1 ? cell : pad(cell, widths[column]!)))
      .join("  ")
      .trimEnd(),
  )
  return [header, ...lines].join("\n")
}

/** Prints the registry; gives the exit code. @since 0.1.0 @category running */
export const status = (invocation: StatusInvocation): Effect.Effect<number> =>
  readRegistry(invocation).pipe(
    Effect.flatMap((registry) =>
      Effect.map(Clock.currentTimeMillis, (nowMs) => {
        process.stdout.write(
          `${invocation.json ? JSON.stringify(registry) : formatRegistry(registry, nowMs)}\n`,
        )
        return exitCode.ok as number
      }),
    ),
    Effect.catch((error) =>
      Effect.sync(() => {
        complain(describeElectionError(error))
        return exitCode.election
      }),
    ),
  )
