/**
 * Runs usrsctp's example programs (Debian `libusrsctp-examples`, 0.9.5.0) as real peers for
 * interop tests, the benchmark and the `sctp-cluster` scenario. Promise based, Node APIs only,
 * so Effect code wraps it with `Effect.promise` and plain scripts call it directly.
 *
 * The programs, as read from their 0.9.5.0 sources and checked here. Every one binds its UDP
 * encapsulation port (RFC 6951) on 0.0.0.0 AND :: (so ours must differ from it on every
 * address), and none has a usage message except `client` and `tsctp`:
 * - `client remote_addr remote_port local_port local_encaps_port remote_encaps_port`:
 *   connects (IPv4 or IPv6 literal), sends each stdin line (fgets, at most 79 bytes) as one
 *   message on stream 0, PPID 0; writes every message it receives to stdout as is;
 *   notifications (`Association change SCTP_COMM_UP…`, `Peer address X is now
 *   SCTP_ADDR_CONFIRMED…`) are printed to stdout too; at stdin EOF it shuts down and prints
 *   `Number of packets (sent/received): (s/r).`; `usrsctp_connect: Connection refused` on
 *   stderr when its INIT is answered by an ABORT.
 * - `echo_server [local_encaps_port [remote_encaps_port]]`: SCTP port 7, one-to-many socket,
 *   sends each complete message back on its stream with its PPID (and U flag); prints
 *   `Msg of length N received from …` per message. Default encapsulation port 9899.
 * - `discard_server [local_encaps_port [remote_encaps_port]]`: SCTP port 9, drops what it
 *   receives, prints `Msg of length N received from …`; turns usrsctp's full debug log on,
 *   like `tsctp` (use `nodebug`).
 * - `tsctp [options] [address]`: receiver without an address (listens on `-p`, default 5001;
 *   one line per association when it ends: `length, messages, recv calls, bytes, seconds,
 *   bytes/s, notifications`), sender with an IPv4 address (connects to port `-p`, sends `-n`
 *   messages (default 1,024; 0 = endless) of `-l` bytes (default 1,024), the last one with
 *   SCTP_EOF, i.e. a graceful SHUTDOWN, then prints `Sending of N messages of length L took S
 *   seconds.` and `Throughput was B Byte/sec.` — times to the last send, not to delivery).
 *   Options: `-E` local UDP encapsulation port (default 9899), `-U` remote UDP encapsulation
 *   port (sender), `-T` seconds to send for, `-u` unordered, `-D` Nagle off, `-f`
 *   fragmentation point, `-S`/`-R` socket send/receive buffer, `-P`/`-t` PR-SCTP policy and
 *   value, `-L` local IPv4 address, `-a` adaptation indication, `-c` callback API, `-d` status
 *   interval, `-v`/`-V` verbose. Turns usrsctp's full debug log on (about 20 MB/s).
 *
 * Shims (LD_PRELOAD), compiled with gcc once per machine into a cache under `os.tmpdir()`:
 * `nodebug.so` makes `usrsctp_sysctl_set_sctp_debug_on` a no-op; `tune.so` applies
 * `USRSCTP_<name>` environment variables (see {@link TuneName}) after the program's own sysctl
 * set-up and reports each on stderr as `[tune] name=value rc=0`. Their C sources are this
 * package's `native/nodebug.c` and `native/tune.c`. Programs also get coreutils'
 * `libstdbuf.so` with `_STDBUF_O=L`: their stdout is a pipe, and without line buffering
 * their notifications would only appear at exit.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync } from "node:fs"
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { bindUdp, closeUdp, holdFreePorts } from "./internal/ports.ts"

/** Where Debian installs the example programs. */
export const programDirectory = "/usr/lib/usrsctp"

/** Absolute paths of the programs this harness runs. */
export const programs = {
  client: `${programDirectory}/client`,
  echoServer: `${programDirectory}/echo_server`,
  discardServer: `${programDirectory}/discard_server`,
  tsctp: `${programDirectory}/tsctp`,
} as const

/** The SCTP port `echo_server` listens on (compiled in). */
export const echoServerSctpPort = 7
/** The SCTP port `discard_server` listens on (compiled in). */
export const discardServerSctpPort = 9
/** `tsctp`'s default SCTP port (`-p`). */
export const tsctpDefaultSctpPort = 5001

const libstdbuf = "/usr/libexec/coreutils/libstdbuf.so"

// ---------------------------------------------------------------------------------------------
// Shims

/** The sysctls `tune.so` sets from `USRSCTP_<name>` (milliseconds for the timers). */
export type TuneName =
  | "rto_min_default"
  | "rto_max_default"
  | "rto_initial_default"
  | "init_rto_max_default"
  | "heartbeat_interval_default"
  | "path_rtx_max_default"
  | "assoc_rtx_max_default"
  | "path_pf_threshold"
  | "debug_on"

/** Paths of the built shims. */
export interface Shims {
  readonly nodebug: string
  readonly tune: string
}

/** Where the shims' C sources are: `native/` of this package (from `src/` or `dist/`). */
export const shimSourceDirectory = (): string =>
  fileURLToPath(new URL("../native/", import.meta.url))

const shimSource = (name: "nodebug" | "tune"): Promise<string> =>
  readFile(Path.join(shimSourceDirectory(), `${name}.c`), "utf8")

const run = (file: string, args: ReadonlyArray<string>) =>
  new Promise<void>((resolve, reject) => {
    execFile(file, [...args], { timeout: 60_000 }, (error, _stdout, stderr) => {
      if (error === null) return resolve()
      const hint =
        (error as NodeJS.ErrnoException).code === "ENOENT"
          ? " (gcc is missing: install it, e.g. `apt-get install -y gcc libc6-dev`)"
          : ""
      reject(new Error(`${file} ${args.join(" ")} failed${hint}: ${error.message}\n${stderr}`))
    })
  })

const shimPaths = (directory: string): Shims => ({
  nodebug: Path.join(directory, "nodebug.so"),
  tune: Path.join(directory, "tune.so"),
})

/**
 * Builds the shims into `parent/usrsctp-shims-<hash of their sources>` unless already there.
 * Idempotent and safe when several processes race: each compiles into its own temporary
 * directory and renames it into place; a loser of the rename uses the winner's directory.
 */
export const buildShimsInto = async (parent: string): Promise<Shims> => {
  const shimSources = { nodebug: await shimSource("nodebug"), tune: await shimSource("tune") }
  const hash = createHash("sha256")
    .update(shimSources.nodebug)
    .update("\0")
    .update(shimSources.tune)
    .digest("hex")
    .slice(0, 16)
  const directory = Path.join(parent, `usrsctp-shims-${hash}`)
  const paths = shimPaths(directory)
  if (existsSync(paths.nodebug) && existsSync(paths.tune)) return paths
  await mkdir(parent, { recursive: true })
  const temporary = await mkdtemp(`${directory}.tmp-`)
  try {
    for (const [name, source] of Object.entries(shimSources)) {
      const c = Path.join(temporary, `${name}.c`)
      await writeFile(c, source)
      await run("gcc", [
        "-shared",
        "-fPIC",
        "-Wall",
        "-O2",
        "-o",
        Path.join(temporary, `${name}.so`),
        c,
        "-ldl",
      ])
    }
    try {
      await rename(temporary, directory)
    } catch (error) {
      // Another process renamed its build first (ENOTEMPTY / EEXIST): use that one.
      const code = (error as NodeJS.ErrnoException).code
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw error
    }
  } finally {
    await rm(temporary, { recursive: true, force: true })
  }
  if (!(existsSync(paths.nodebug) && existsSync(paths.tune)))
    throw new Error(`usrsctp shims missing in ${directory} after the build`)
  return paths
}

let shimsOnce: Promise<Shims> | undefined

/** The shims, built once per process into `os.tmpdir()` (see {@link buildShimsInto}). */
export const shims = (): Promise<Shims> => {
  shimsOnce ??= buildShimsInto(Os.tmpdir()).catch((error: unknown) => {
    shimsOnce = undefined
    throw error
  })
  return shimsOnce
}

// ---------------------------------------------------------------------------------------------
// Processes

/** What every program accepts besides its own arguments. */
export interface ShimOptions {
  /** LD_PRELOAD `nodebug.so`: no usrsctp debug log (tsctp and discard_server turn it on). */
  readonly nodebug?: boolean
  /** LD_PRELOAD `tune.so` with these `USRSCTP_<name>` values. */
  readonly tune?: Partial<Record<TuneName, number>>
  /** Line-buffered stdout via coreutils' libstdbuf (default true). */
  readonly lineBuffered?: boolean
}

/** A running program, tracked until {@link killAll}. */
export interface UsrsctpProcess {
  readonly child: ChildProcess
  /** Captured stdout / stderr (the newest {@link outputLimitBytes} of each). */
  readonly stdout: () => string
  readonly stderr: () => string
  /** stdout then stderr. */
  readonly output: () => string
  /** Resolves with the first match of `pattern` in stdout or stderr (past or future); rejects
   * after `timeoutMs` or when the process exits without it. */
  readonly waitFor: (pattern: RegExp, timeoutMs: number) => Promise<RegExpMatchArray>
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  /** Writes to stdin (the client sends each line as a message). */
  readonly write: (text: string) => void
  /** Closes stdin (the client then shuts the association down). */
  readonly endInput: () => void
  /** SIGKILL, resolved once it has exited. */
  readonly kill: () => Promise<void>
}

/** Each captured stream keeps at most this many characters (older ones are dropped). */
export const outputLimitBytes = 4 * 1024 * 1024

const running = new Set<UsrsctpProcess>()

const environment = async (options: ShimOptions): Promise<NodeJS.ProcessEnv> => {
  const preload: Array<string> = []
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const key of Object.keys(env)) if (key.startsWith("USRSCTP_")) delete env[key]
  if (options.lineBuffered ?? true) {
    if (existsSync(libstdbuf)) {
      preload.push(libstdbuf)
      env._STDBUF_O = "L"
    }
  }
  if (options.nodebug === true || options.tune !== undefined) {
    const built = await shims()
    if (options.nodebug === true) preload.push(built.nodebug)
    if (options.tune !== undefined) {
      preload.push(built.tune)
      for (const [name, value] of Object.entries(options.tune)) {
        if (!Number.isInteger(value) || value < 0)
          throw new Error(`USRSCTP_${name} must be a non-negative integer, got ${value}`)
        env[`USRSCTP_${name}`] = String(value)
      }
    }
  }
  if (preload.length > 0) env.LD_PRELOAD = preload.join(":")
  else delete env.LD_PRELOAD
  return env
}

/** Spawns `file args` with the shims asked for; tracked for {@link killAll}. */
export const start = async (
  file: string,
  args: ReadonlyArray<string>,
  options: ShimOptions = {},
): Promise<UsrsctpProcess> => {
  if (!existsSync(file))
    throw new Error(
      `${file} is missing: install libusrsctp-examples (scripts/ensure-system-deps.sh)`,
    )
  const env = await environment(options)
  const child = spawn(file, [...args], { stdio: ["pipe", "pipe", "pipe"], env })
  let stdout = ""
  let stderr = ""
  const waiters = new Set<() => void>()
  const append = (current: string, data: Buffer) => {
    const next = current + data.toString("latin1")
    return next.length > outputLimitBytes ? next.slice(next.length - outputLimitBytes / 2) : next
  }
  child.stdout?.on("data", (data: Buffer) => {
    stdout = append(stdout, data)
    for (const waiter of waiters) waiter()
  })
  child.stderr?.on("data", (data: Buffer) => {
    stderr = append(stderr, data)
    for (const waiter of waiters) waiter()
  })
  // A write to a killed client must not crash the test process.
  child.stdin?.on("error", () => {})
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }))
    child.once("error", () => resolve({ code: null, signal: null }))
  })
  let isExited = false
  void exited.then(() => {
    isExited = true
    for (const waiter of waiters) waiter()
  })
  const output = () => `${stdout}${stderr}`
  const waitFor = (pattern: RegExp, timeoutMs: number) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const match = stdout.match(pattern) ?? stderr.match(pattern)
        if (match !== null) {
          done()
          resolve(match)
        } else if (isExited) {
          done()
          reject(new Error(`${file} exited without ${pattern}; output:\n${output().slice(-2000)}`))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(
          new Error(
            `${file}: no ${pattern} within ${timeoutMs} ms; output:\n${output().slice(-2000)}`,
          ),
        )
      }, timeoutMs)
      const done = () => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })
  const handle: UsrsctpProcess = {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    output,
    waitFor,
    exited,
    write: (text) => {
      child.stdin?.write(text)
    },
    endInput: () => {
      child.stdin?.end()
    },
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      await exited
      running.delete(handle)
    },
  }
  running.add(handle)
  void exited.then(() => running.delete(handle))
  return handle
}

/** SIGKILLs every process this module started and waits until each has exited (afterEach). */
export const killAll = async (): Promise<void> => {
  await Promise.all([...running].map((program) => program.kill()))
}

/** How many started processes are still running. */
export const runningCount = (): number => running.size

// ---------------------------------------------------------------------------------------------
// Ports

/**
 * A UDP port free on 0.0.0.0 and :: at once (a dual-stack bind on :: conflicts with any IPv4
 * or IPv6 bind of that port), for a usrsctp program's encapsulation port. Drawn below the
 * kernel's ephemeral range, like `Ports`', so no socket bound to port 0 meanwhile is given it.
 * Released before returning, so a race with another explicit binder is possible but unlikely.
 */
export const freeEncapsulationPort = async (): Promise<number> => {
  const [port] = await freeEncapsulationPorts(1)
  return port!
}

/**
 * `count` distinct such ports (see {@link freeEncapsulationPort}), e.g. ours and a usrsctp
 * program's: all are held until every one is known, so no two are the same.
 */
export const freeEncapsulationPorts = (count: number): Promise<Array<number>> =>
  holdFreePorts(count, (port) => bindUdp("::", port, { ipv6Only: false }), closeUdp)

const boundUdpPorts = async (): Promise<Set<number>> => {
  const ports = new Set<number>()
  for (const file of ["/proc/net/udp", "/proc/net/udp6"]) {
    const text = await readFile(file, "latin1").catch(() => "")
    for (const line of text.split("\n").slice(1)) {
      const local = line.trim().split(/\s+/)[1]
      const hex = local?.split(":")[1]
      if (hex !== undefined) ports.add(Number.parseInt(hex, 16))
    }
  }
  return ports
}

/**
 * Resolves once something has bound UDP `port` (read from /proc/net/udp{,6}), i.e. the
 * program got past `usrsctp_init`; polls every 10 ms for at most `timeoutMs`. Rejects early
 * if `process` exits.
 */
export const waitUdpBound = async (
  port: number,
  timeoutMs: number,
  owner?: UsrsctpProcess,
): Promise<void> => {
  const started = performance.now()
  while (performance.now() - started < timeoutMs) {
    if ((await boundUdpPorts()).has(port)) return
    if (owner !== undefined && (owner.child.exitCode !== null || owner.child.signalCode !== null))
      throw new Error(
        `the process exited before binding UDP ${port}:\n${owner.output().slice(-2000)}`,
      )
    await sleep(10)
  }
  throw new Error(`nothing bound UDP port ${port} within ${timeoutMs} ms`)
}

// A server binds its encapsulation port in usrsctp_init, then creates, binds and listens on its
// socket a few hundred microseconds later; an INIT in between would be dropped silently
// (blackhole 2) and cost the client an RTO, so servers get this much more time.
const listenSettleMs = 100

const startServer = async (file: string, options: ServerOptions): Promise<UsrsctpProcess> => {
  const args = [String(options.localEncapsPort)]
  if (options.remoteEncapsPort !== undefined) args.push(String(options.remoteEncapsPort))
  const server = await start(file, args, options)
  await waitUdpBound(options.localEncapsPort, 5_000, server)
  await sleep(listenSettleMs)
  return server
}

// ---------------------------------------------------------------------------------------------
// The programs

/** Options of {@link startClient}. */
export interface ClientOptions extends ShimOptions {
  /** The server's address, an IPv4 or IPv6 literal. */
  readonly host: string
  /** The server's SCTP port. */
  readonly port: number
  /** The client's SCTP port (0: any). */
  readonly localPort?: number
  /** The client's UDP encapsulation port (bound on 0.0.0.0 and ::). */
  readonly localEncapsPort: number
  /** The server's UDP encapsulation port. */
  readonly remoteEncapsPort: number
}

/** Starts `client`: it sends INIT at once; write lines to send them, `endInput` to shut down. */
export const startClient = (options: ClientOptions): Promise<UsrsctpProcess> =>
  start(
    programs.client,
    [
      options.host,
      String(options.port),
      String(options.localPort ?? 0),
      String(options.localEncapsPort),
      String(options.remoteEncapsPort),
    ],
    options,
  )

/** Options of {@link startEchoServer} and {@link startDiscardServer}. */
export interface ServerOptions extends ShimOptions {
  /** The server's UDP encapsulation port (bound on 0.0.0.0 and ::). */
  readonly localEncapsPort: number
  /** The peers' UDP encapsulation port; without it the server answers to each packet's
   * source port. */
  readonly remoteEncapsPort?: number
}

/** Starts `echo_server` (SCTP port {@link echoServerSctpPort}); resolves once it listens. */
export const startEchoServer = (options: ServerOptions): Promise<UsrsctpProcess> =>
  startServer(programs.echoServer, options)

/** Starts `discard_server` (SCTP port {@link discardServerSctpPort}); resolves once it listens. */
export const startDiscardServer = (options: ServerOptions): Promise<UsrsctpProcess> =>
  startServer(programs.discardServer, options)

/** A `tsctp` receiver: listens, prints one {@link TsctpReceiverResult} line per association. */
export interface TsctpReceiverOptions extends ShimOptions {
  readonly role: "receiver"
  readonly localEncapsPort: number
  /** SCTP port (`-p`), default {@link tsctpDefaultSctpPort}. */
  readonly port?: number
  /** Socket receive buffer bytes (`-R`). */
  readonly receiveBufferBytes?: number
}

/** A `tsctp` sender: connects to an IPv4 address and sends, the last message with SCTP_EOF. */
export interface TsctpSenderOptions extends ShimOptions {
  readonly role: "sender"
  /** IPv4 literal (tsctp parses the address with inet_pton(AF_INET)). */
  readonly host: string
  /** SCTP port (`-p`), default {@link tsctpDefaultSctpPort}. */
  readonly port?: number
  readonly localEncapsPort: number
  readonly remoteEncapsPort: number
  /** Bytes per message (`-l`). */
  readonly messageLength: number
  /** Number of messages (`-n`); 0 sends until `runtimeSeconds`. */
  readonly messages: number
  /** Seconds to send for (`-T`). */
  readonly runtimeSeconds?: number
  /** Unordered messages (`-u`). */
  readonly unordered?: boolean
  /** Nagle off (`-D`). */
  readonly nodelay?: boolean
  /** Fragmentation point (`-f`, SCTP_MAXSEG). */
  readonly fragmentationPoint?: number
  /** Socket send buffer bytes (`-S`). */
  readonly sendBufferBytes?: number
}

/** Options of {@link startTsctp}. */
export type TsctpOptions = TsctpReceiverOptions | TsctpSenderOptions

/** The command line {@link startTsctp} runs (exported for the documentation and tests). */
export const tsctpArguments = (options: TsctpOptions): Array<string> => {
  const args = [
    "-E",
    String(options.localEncapsPort),
    "-p",
    String(options.port ?? tsctpDefaultSctpPort),
  ]
  if (options.role === "receiver") {
    if (options.receiveBufferBytes !== undefined)
      args.push("-R", String(options.receiveBufferBytes))
    return args
  }
  args.push("-U", String(options.remoteEncapsPort), "-l", String(options.messageLength))
  args.push("-n", String(options.messages))
  if (options.runtimeSeconds !== undefined) args.push("-T", String(options.runtimeSeconds))
  if (options.unordered === true) args.push("-u")
  if (options.nodelay === true) args.push("-D")
  if (options.fragmentationPoint !== undefined) args.push("-f", String(options.fragmentationPoint))
  if (options.sendBufferBytes !== undefined) args.push("-S", String(options.sendBufferBytes))
  args.push(options.host)
  return args
}

/** Starts `tsctp`; a receiver resolves once it listens, a sender at once (it connects itself). */
export const startTsctp = async (options: TsctpOptions): Promise<UsrsctpProcess> => {
  const tsctp = await start(programs.tsctp, tsctpArguments(options), options)
  if (options.role === "receiver") {
    await waitUdpBound(options.localEncapsPort, 5_000, tsctp)
    await sleep(listenSettleMs)
  }
  return tsctp
}

// ---------------------------------------------------------------------------------------------
// tsctp's results

/** One association as the `tsctp` receiver reports it when the association ends. */
export interface TsctpReceiverResult {
  /** Length of the first message (tsctp assumes all have it). */
  readonly messageLength: number
  /** Complete messages (MSG_EOR) received. */
  readonly messages: number
  readonly receiveCalls: number
  /** User bytes received. */
  readonly bytes: number
  /** From the first receive to the end of the association (SHUTDOWN from the sender). */
  readonly seconds: number
  /** messageLength × messages / seconds, as tsctp computes it. */
  readonly bytesPerSecond: number
  readonly notifications: number
}

/** The sender's summary (time to its last send call, not to delivery). */
export interface TsctpSenderResult {
  readonly messages: number
  readonly messageLength: number
  readonly seconds: number
  readonly bytesPerSecond: number
}

const number = String.raw`(-?\d+(?:\.\d+)?)`
const receiverLine = new RegExp(
  `^${number}, ${number}, ${number}, ${number}, ${number}, ${number}, ${number}$`,
  "gm",
)

/** Every receiver result line in `output`, in order (non-matching lines are ignored). */
export const parseTsctpReceiver = (output: string): Array<TsctpReceiverResult> =>
  [...output.matchAll(receiverLine)].map((match) => {
    const [length, messages, calls, bytes, seconds, rate, notifications] = match
      .slice(1)
      .map(Number) as [number, number, number, number, number, number, number]
    return {
      messageLength: length,
      messages,
      receiveCalls: calls,
      bytes,
      seconds,
      bytesPerSecond: rate,
      notifications,
    }
  })

/** A pattern matching one complete receiver result line (for {@link UsrsctpProcess.waitFor}). */
export const tsctpReceiverLinePattern: RegExp = new RegExp(receiverLine.source, "m")

/** The sender's summary in `output`, or undefined before it has printed both lines. */
export const parseTsctpSender = (output: string): TsctpSenderResult | undefined => {
  const sending = output.match(
    /^Sending of (\d+) messages of length (\d+) took (\d+(?:\.\d+)?) seconds\.$/m,
  )
  const throughput = output.match(/^Throughput was (\d+(?:\.\d+)?) Byte\/sec\.$/m)
  if (sending === null || throughput === null) return undefined
  return {
    messages: Number(sending[1]),
    messageLength: Number(sending[2]),
    seconds: Number(sending[3]),
    bytesPerSecond: Number(throughput[1]),
  }
}

// ---------------------------------------------------------------------------------------------
// Observing a program's packets

/** A UDP socket of ours on `host` (port picked by the OS) that records each datagram's arrival. */
export interface UdpRecorder {
  readonly port: number
  /** Arrival times (performance.now(), ms) and bytes of every datagram so far. */
  readonly received: () => ReadonlyArray<{ readonly atMs: number; readonly bytes: Uint8Array }>
  readonly close: () => Promise<void>
}

/** Binds a recorder, e.g. to count a client's INIT retransmissions. */
export const recordUdp = async (host: string): Promise<UdpRecorder> => {
  const socket = await bindUdp(host, 0, { ipv6Only: true })
  const received: Array<{ atMs: number; bytes: Uint8Array }> = []
  socket.on("message", (bytes) =>
    received.push({ atMs: performance.now(), bytes: Uint8Array.from(bytes) }),
  )
  return { port: socket.address().port, received: () => received, close: () => closeUdp(socket) }
}
