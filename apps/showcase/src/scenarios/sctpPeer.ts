/**
 * The outside computer of the `sctp-cluster` scenario: usrsctp's example `client` (a real
 * SCTP stack we did not write, Debian `libusrsctp-examples`) when it is installed, or
 * Understudy's own SCTP endpoint (`@understudy/multihome`'s `createEndpoint`) when it is not — never
 * a failed scenario for a missing package. Both send numbered lines, report each echo, the
 * peer-address changes they see, and anything worse than a path change.
 *
 * @since 0.1.0
 */
import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { Usrsctp } from "@understudy/app-kit"
import { createEndpoint } from "@understudy/multihome"
import { waitFor } from "../processes.ts"
import type { Options } from "../Scenario.ts"

/** Which peer to use: `auto` prefers usrsctp and installs it as root. @since 0.1.0 */
export type PeerChoice = Options["sctpPeer"]

/** The peer's timers (usrsctp's sysctl names; the same values for our endpoint). @since 0.1.0 */
export type Tune = Partial<Record<Usrsctp.TuneName, number>>

/** What the scenario runs against, and what its rows say about the choice. @since 0.1.0 */
export interface PeerDecision {
  readonly kind: "usrsctp" | "understudy"
  /** Shown in the table when the peer is not usrsctp: which one, and why. */
  readonly note: string | undefined
}

/** What {@link decidePeer} looks at (injected, so every branch is tested). @since 0.1.0 */
export interface PeerEnvironment {
  readonly usrsctpInstalled: () => boolean
  readonly isRoot: boolean
  /** Installs usrsctp's programs (and gcc, for the timer shim); resolves false if it failed. */
  readonly install: () => Promise<boolean>
  /** Builds the LD_PRELOAD shims that tune the client's timers; false if gcc is missing. */
  readonly shimsBuild: () => Promise<boolean>
  readonly log: (line: string) => void
}

const aptHint = "apt-get install libusrsctp-examples"

/**
 * Picks the peer. `usrsctp` is what was asked (it fails later if missing); `understudy`
 * always works; `auto` takes usrsctp if installed, installs it when root, and otherwise
 * falls back to our own endpoint, saying why.
 *
 * @since 0.1.0
 */
export const decidePeer = async (
  choice: PeerChoice,
  environment: PeerEnvironment,
): Promise<PeerDecision> => {
  if (choice === "understudy")
    return { kind: "understudy", note: "peer: understudy (--sctp-peer understudy)" }
  if (choice === "usrsctp") return { kind: "usrsctp", note: undefined }
  if (!environment.usrsctpInstalled()) {
    if (!environment.isRoot)
      return { kind: "understudy", note: `peer: understudy (usrsctp not installed: ${aptHint})` }
    environment.log("usrsctp's client is missing: installing it (scripts/ensure-system-deps.sh)")
    if (!(await environment.install()) || !environment.usrsctpInstalled())
      return {
        kind: "understudy",
        note: `peer: understudy (usrsctp could not be installed: ${aptHint})`,
      }
  }
  if (!(await environment.shimsBuild()))
    return {
      kind: "understudy",
      note: "peer: understudy (gcc, needed to tune usrsctp's timers, is not installed: apt-get install gcc libc6-dev)",
    }
  return { kind: "usrsctp", note: undefined }
}

const ensureSystemDeps = fileURLToPath(
  new URL("../../../../scripts/ensure-system-deps.sh", import.meta.url),
)

/** Runs the repository's installer for usrsctp's programs and gcc, logging its output. */
const installUsrsctp = (log: (line: string) => void): Promise<boolean> =>
  new Promise((resolve) => {
    const child = spawn("bash", [ensureSystemDeps, "libusrsctp-examples", "gcc", "libc6-dev"], {
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 600_000,
    })
    const forward = (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) if (line.trim() !== "") log(`  ${line}`)
    }
    child.stdout.on("data", forward)
    child.stderr.on("data", forward)
    child.on("error", () => resolve(false))
    child.on("close", (code) => resolve(code === 0))
  })

/** This machine, as {@link decidePeer} sees it. @since 0.1.0 */
export const machineEnvironment = (log: (line: string) => void): PeerEnvironment => ({
  usrsctpInstalled: () => existsSync(Usrsctp.programs.client),
  isRoot: process.getuid?.() === 0,
  install: () => installUsrsctp(log),
  shimsBuild: () =>
    Usrsctp.shims().then(
      () => true,
      () => false,
    ),
  log,
})

/** One echo: the message number and when it arrived (performance.now()). @since 0.1.0 */
export interface Echo {
  readonly n: number
  readonly atMs: number
}

/** A running peer, associated with the cluster. @since 0.1.0 */
export interface SctpPeer {
  /** What the progress lines call it. */
  readonly name: string
  /** Echoes so far, in arrival order. */
  readonly echoes: ReadonlyArray<Echo>
  /** Sends message `n` (`n <n>`). */
  readonly send: (n: number) => void
  /** Peer-address and association-change notices so far. */
  readonly notices: () => ReadonlyArray<string>
  /** The first notice that means more than a path change (COMM_LOST, ABORT, ...), if any. */
  readonly failure: () => string | undefined
  /** Graceful SHUTDOWN; resolves whether it completed within `timeoutMs`. */
  readonly shutdown: (timeoutMs: number) => Promise<boolean>
  /** Stops the peer (kills the client, closes the endpoint). */
  readonly close: () => Promise<void>
}

/** Where the peer connects: the cluster's first address, its UDP port and SCTP port. */
export interface Target {
  readonly host: string
  /** The other address the cluster's endpoint must show (confirmed before the test). */
  readonly alternate: string
  readonly udpPort: number
  readonly port: number
  readonly localEncapsPort: number
  readonly tune: Tune
  readonly startBoundMs: number
}

/** Echo lines as the peer receives them: the message as sent, `n <number>`. */
const echoPattern = /^n (\d+)$/

/** The client's notices that would mean the peer noticed more than a path change. */
const failureNotice = /SCTP_COMM_LOST|SCTP_RESTART|SCTP_SHUTDOWN|SCTP_CANT_STR_ASSOC|ABORT/

/**
 * usrsctp's `client`: connected to `target.host`, tuned with `target.tune` (the `tune.so`
 * shim), once both of the cluster's addresses are confirmed.
 *
 * @since 0.1.0
 */
export const startUsrsctpPeer = async (target: Target): Promise<SctpPeer> => {
  const client = await Usrsctp.startClient({
    host: target.host,
    port: target.port,
    localEncapsPort: target.localEncapsPort,
    remoteEncapsPort: target.udpPort,
    tune: target.tune,
  })
  const echoes: Array<Echo> = []
  let pending = ""
  client.child.stdout?.on("data", (data: Buffer) => {
    pending += data.toString("latin1")
    for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
      const match = echoPattern.exec(pending.slice(0, nl))
      pending = pending.slice(nl + 1)
      if (match !== null) echoes.push({ n: Number(match[1]), atMs: performance.now() })
    }
  })
  await client.waitFor(/SCTP_COMM_UP/, target.startBoundMs)
  const alternate = target.alternate.replaceAll(".", "\\.")
  await client.waitFor(
    new RegExp(`Peer address ${alternate} is now SCTP_ADDR_CONFIRMED`),
    target.startBoundMs,
  )
  // Notices before the association was fully set up are not part of the story.
  const setUp = client.stdout().length
  return {
    name: "usrsctp client",
    echoes,
    send: (n) => client.write(`n ${n}\n`),
    notices: () =>
      client
        .stdout()
        .slice(setUp)
        .split("\n")
        .filter((text) => text.startsWith("Peer address") || text.startsWith("Association change")),
    failure: () => client.output().match(failureNotice)?.[0],
    shutdown: async (timeoutMs) => {
      client.endInput()
      try {
        await client.waitFor(/SCTP_SHUTDOWN_COMP/, timeoutMs)
        return true
      } catch {
        return false
      }
    },
    close: () => client.kill(),
  }
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/**
 * Understudy's own SCTP endpoint (`createEndpoint`) on 127.0.0.1, with the same timers, as the
 * outside computer: connected to `target.host`, once both addresses are confirmed.
 *
 * @since 0.1.0
 */
export const startUnderstudyPeer = async (target: Target): Promise<SctpPeer> => {
  const { tune } = target
  const endpoint = await createEndpoint({
    // The outside computer's own log lines are not the showcase's: they would break its table.
    logger: () => {},
    host: "127.0.0.1",
    encapsulationPort: target.localEncapsPort,
    // Any SCTP port: the peer is the only endpoint on its UDP port.
    port: 5000,
    config: {
      ...(tune.rto_min_default !== undefined ? { rtoMin: tune.rto_min_default } : {}),
      ...(tune.rto_max_default !== undefined ? { rtoMax: tune.rto_max_default } : {}),
      ...(tune.rto_initial_default !== undefined ? { rtoInitial: tune.rto_initial_default } : {}),
      ...(tune.path_rtx_max_default !== undefined
        ? { pathMaxRetrans: tune.path_rtx_max_default }
        : {}),
    },
  })
  try {
    const association = await endpoint.connect({
      host: target.host,
      udpPort: target.udpPort,
      port: target.port,
      timeout: target.startBoundMs,
    })
    const echoes: Array<Echo> = []
    const notices: Array<string> = []
    let failure: string | undefined
    let shutdownRequested = false
    let confirmed = false
    association.on("message", (message: { readonly data: Uint8Array }) => {
      const match = echoPattern.exec(decoder.decode(message.data))
      if (match !== null) echoes.push({ n: Number(match[1]), atMs: performance.now() })
    })
    association.on("PathChange", (event: { readonly host: string; readonly state: string }) => {
      notices.push(`Peer address ${event.host} is now ${event.state}`)
      if (event.host === target.alternate && event.state === "Confirmed") confirmed = true
    })
    for (const tag of ["CommLost", "Restart", "ShutdownComplete"] as const)
      association.on(tag, () => {
        notices.push(`Association change ${tag}`)
        if (tag !== "ShutdownComplete" || !shutdownRequested) failure ??= tag
      })
    association.on("close", (reason: { readonly _tag: string }) => {
      if (reason._tag === "Aborted") failure ??= "ABORT"
    })
    await waitFor(
      `the cluster's address ${target.alternate} confirmed`,
      () => (confirmed ? true : undefined),
      target.startBoundMs,
    )
    const setUp = notices.length
    return {
      name: "Understudy's SCTP endpoint",
      echoes,
      send: (n) => {
        // A send after the association is gone is reported by `failure`, not thrown here.
        association.send(0, 0, encoder.encode(`n ${n}`)).catch(() => {})
      },
      notices: () => notices.slice(setUp),
      failure: () => failure,
      shutdown: async (timeoutMs) => {
        shutdownRequested = true
        const done = association.shutdown().then(
          () => true,
          () => false,
        )
        const late = new Promise<boolean>((resolve) =>
          setTimeout(() => resolve(false), timeoutMs).unref(),
        )
        return Promise.race([done, late])
      },
      close: () => endpoint.close(),
    }
  } catch (error) {
    await endpoint.close()
    throw error
  }
}
