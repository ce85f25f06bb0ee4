/**
 * The command line of `server-group`, on `effect/cli`: `parse` is a pure function from argv
 * to what to do, so every flag and every error is unit tested without a process.
 *
 * @since 0.1.0
 */
import { Cli } from "@understudy/app-kit"
import { Address, Observability } from "@understudy/transport"
import { Result, Schema } from "effect"
import { Command } from "effect/cli"

/** One member of the group as `--peers` gives it. @since 0.1.0 @category models */
export interface Peer {
  readonly id: string
  readonly address: Address.Udp
  readonly cpu: number
  readonly bandwidthMbps: number
}

/** Protocol timings, the same on every server. @since 0.1.0 @category models */
export interface Timings {
  readonly detectionPeriodMs: number
  readonly inquiryTimeoutMs: number
  readonly baseDelayMs: number
  readonly floorDelayMs: number
}

/**
 * Where the name server keeps its records: the embedded name server (`tcp://HOST:PORT`,
 * `server-group nameserver`) or an etcd cluster member (`etcd://HOST:PORT`).
 *
 * @since 0.1.0
 * @category models
 */
export type StoreLocation =
  | { readonly _tag: "Remote"; readonly address: Address.StreamAddress }
  | { readonly _tag: "Etcd"; readonly endpoint: string }

/** @since 0.1.0 @category models */
export type Invocation =
  | Cli.Answer
  | {
      readonly _tag: "Serve"
      readonly id: string
      readonly peers: ReadonlyArray<Peer>
      readonly http: { readonly host: string; readonly port: number }
      readonly store: StoreLocation
      readonly group: string
      readonly timings: Timings
      /** The group's cluster key file (0600); `undefined` only with `insecure`. */
      readonly clusterKey: string | undefined
      /** `--insecure`: run without a key, believing source addresses (a warning says so). */
      readonly insecure: boolean
      /** Where this server's write-ahead log lives; without it a restart is amnesiac. */
      readonly dataDir: string | undefined
      /** `--reads`: how GET /kv/KEY is confirmed, read index (a round) or a leader lease. */
      readonly reads: ReadMode
    }
  | {
      readonly _tag: "NameServer"
      readonly listen: Address.StreamAddress
      /** Clients must prove this key (the transport's HMAC handshake); `undefined` only with `insecure`. */
      readonly clusterKey: string | undefined
      /** `--insecure`: any client that reaches the port may read and register holders. */
      readonly insecure: boolean
    }
  | { readonly _tag: "KeyGen"; readonly out: string }
  | {
      readonly _tag: "Load"
      readonly store: StoreLocation
      readonly group: string
      readonly durationMs: number
      readonly rate: number
      readonly concurrency: number
      readonly record: string | undefined
      readonly deadlineMs: number
      /** A keyed group's cluster key file: its HTTP API wants the token derived from it. */
      readonly clusterKey: string | undefined
    }

/** @since 0.1.0 */
export const programName = "server-group"

/** @since 0.1.0 */
export const defaultTimings: Timings = {
  detectionPeriodMs: 50,
  inquiryTimeoutMs: 250,
  baseDelayMs: 100,
  floorDelayMs: 40,
}

/**
 * `--reads`: `index` (default; a majority round per batch of reads) or `lease` (a leader
 * lease: no round while it holds, safe with clocks within 1% of true rate).
 *
 * @since 0.1.0
 * @category models
 */
export const ReadMode = Schema.Literals(["index", "lease"])
/** @since 0.1.0 @category models */
export type ReadMode = typeof ReadMode.Type
const decodeReadMode = Schema.decodeUnknownResult(ReadMode)

/** @since 0.1.0 */
export const usage = `Usage:
  ${programName} serve --id ID --peers ID=udp://HOST:PORT[?cpu=N&bw=N],... --http HOST:PORT --store tcp://HOST:PORT|etcd://HOST:PORT
                 [--capacity cpu=N,bw=N] [--group NAME] [--detect-ms N] [--inquiry-ms N] [--base-ms N] [--floor-ms N]
                 (--cluster-key FILE | --insecure) [--data-dir DIR] [--reads index|lease]
  ${programName} nameserver --listen tcp://HOST:PORT (--cluster-key FILE | --insecure)
  ${programName} keygen --out FILE
  ${programName} load --store tcp://HOST:PORT|etcd://HOST:PORT [--duration 10s] [--rate 200] [--concurrency 8] [--record FILE] [--cluster-key FILE]
  ${programName} --help

Every command that runs a server (serve, nameserver) also takes:
${Observability.usage}

serve       runs one server of a replicated key-value group. The servers elect a master with
            staggered election delays; the master registers itself in the name server
            (--store) and orders every write; all servers apply them.
            Every server must be given the same --peers (and capacities): a server's index,
            1 = most capable (cpu, then bandwidth, then id), decides conflicts and delays.
            --capacity sets this server's capacity (its --peers entry must agree or omit it).
            HTTP: GET /kv/KEY, PUT /kv/KEY (body = value; optional headers x-client-id and
            x-request-id make a retry exactly-once), GET /kv (everything), GET /status.
            A backup answers writes with 307 to the master (or 503 when none is known).
            --cluster-key FILE: the group's key (hex, mode 0600, the same on every server):
            every group datagram is authenticated with it, and so is the connection to a
            tcp:// name server (started with the same --cluster-key). --insecure instead runs
            without a key: the servers believe any datagram from a member's address and
            talk to an --insecure name server (a warning says so). One of the two is required.
            --data-dir DIR: this server's write-ahead log (DIR/ID.wal, fsynced before any
            answer): a server killed and started again with the same DIR keeps its log,
            term and promises, and a whole group restarted keeps every acknowledged write.
            Without it a restarted server starts empty and is caught up by the master.
            --reads index|lease: how GET /kv/KEY is made linearizable. index (default): the
            master answers once a majority acknowledged a round begun after the read (a
            round trip). lease: at once while a majority acknowledged it within a lease just
            under --inquiry-ms, which is safe only while every clock keeps within 1% of true
            rate; a new master waits out its predecessor's lease before it answers anything.
nameserver  runs the embedded name server: a store server over a memory store.
            --cluster-key FILE: only clients that prove the key (an HMAC handshake over
            fresh nonces; every frame MACed) may read or register a master: serve and load
            pass their own --cluster-key, which must be the same file. --insecure instead
            lets anyone who reaches the port register a master (a warning says so). One of
            the two is required. (An etcd:// store is secured by etcd's own means.)
keygen      writes a new random cluster key to FILE (mode 0600; never replaces a file).
load        writes keys k0, k1, ... at --rate per second for --duration to the master it
            resolves from the name server, follows redirects, retries with the same request
            id, then prints one JSON summary: acknowledged writes, errors, unavailability
            windows. --record FILE writes every acknowledged write as a JSON line. SIGINT or
            SIGTERM ends the run early, with its summary. --cluster-key FILE: a keyed
            group's key: it authenticates load to the name server, and the HTTP token is
            derived from it.

HTTP API of a keyed group (serve --cluster-key): every /kv request carries the header
x-cluster-token: HMAC-SHA256(key, "understudy server-group http api") in hex; without it
the answer is 401 {"error":"Unauthorized"}. GET /status needs no token.

Exit codes: 0 ok; 2 bad usage; 1 runtime error.`

const fail = Cli.usageError

/** `10s`, `1500ms`, `2m`, or a bare number of seconds. @since 0.1.0 @category parsing */
export const parseDuration = Cli.parseDuration

/** `cpu=4,bw=1000` (either may be left out: 1). @since 0.1.0 @category parsing */
export const parseCapacity = (
  text: string,
  separator = ",",
): { readonly cpu: number; readonly bandwidthMbps: number } | string => {
  let cpu = 1
  let bandwidthMbps = 1
  for (const part of text.split(separator)) {
    const [name, value] = part.split("=")
    const number = Number(value)
    if (value === undefined || value === "" || !Number.isFinite(number) || number < 0) {
      return `bad capacity ${JSON.stringify(part)}: expected cpu=N or bw=N`
    }
    if (name === "cpu") cpu = number
    else if (name === "bw") bandwidthMbps = number
    else return `unknown capacity ${JSON.stringify(name)}: expected cpu or bw`
  }
  return { cpu, bandwidthMbps }
}

const idPattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/

/** `1=udp://127.0.0.1:7001?cpu=4&bw=100,2=...`. @since 0.1.0 @category parsing */
export const parsePeers = (
  text: string,
): { readonly peers: ReadonlyArray<Peer>; readonly explicit: ReadonlySet<string> } | string => {
  const peers: Array<Peer> = []
  const explicit = new Set<string>()
  for (const entry of text.split(",")) {
    const equals = entry.indexOf("=")
    if (equals <= 0) return `--peers entry ${JSON.stringify(entry)}: expected ID=udp://HOST:PORT`
    const id = entry.slice(0, equals)
    if (!idPattern.test(id))
      return `--peers id ${JSON.stringify(id)}: use letters, digits, '_', '-'`
    if (peers.some((peer) => peer.id === id)) return `--peers lists ${id} twice`
    let url = entry.slice(equals + 1)
    let capacity = { cpu: 1, bandwidthMbps: 1 }
    const question = url.indexOf("?")
    if (question >= 0) {
      const parsed = parseCapacity(url.slice(question + 1), "&")
      if (typeof parsed === "string") return `--peers ${id}: ${parsed}`
      capacity = parsed
      explicit.add(id)
      url = url.slice(0, question)
    }
    const address = Address.parseDatagram(url)
    if (address instanceof Address.InvalidAddress) return `--peers ${id}: ${address.reason}`
    peers.push({ id, address, ...capacity })
  }
  if (peers.length < 1) return "--peers is empty"
  return { peers, explicit }
}

const flags = {
  id: Cli.text("id", "ID", "this server's id in --peers"),
  peers: Cli.text(
    "peers",
    "ID=udp://HOST:PORT[?cpu=N&bw=N],...",
    "every member of the group (the same on every server)",
  ),
  http: Cli.text("http", "HOST:PORT", "where the HTTP API listens"),
  store: Cli.text(
    "store",
    "tcp://HOST:PORT|etcd://HOST:PORT",
    "the name server: an embedded one (server-group nameserver) or an etcd member",
  ),
  capacity: Cli.text("capacity", "cpu=N,bw=N", "this server's capacity"),
  group: Cli.text("group", "NAME", "the group's name in the name server (default kv)"),
  listen: Cli.text("listen", "tcp://HOST:PORT", "where the name server listens"),
  duration: Cli.text("duration", "10s", "how long load writes (e.g. 10s, 500ms, 2m)"),
  rate: Cli.text("rate", "N", "writes per second, 1..100000 (default 200)"),
  concurrency: Cli.text("concurrency", "N", "writes in flight, 1..1000 (default 8)"),
  record: Cli.text("record", "FILE", "write every acknowledged write there as a JSON line"),
  deadline: Cli.text("deadline", "10s", "how long a write may take (default 10s)"),
  "detect-ms": Cli.text(
    "detect-ms",
    "N",
    `detection period, ms (default ${defaultTimings.detectionPeriodMs})`,
  ),
  "inquiry-ms": Cli.text(
    "inquiry-ms",
    "N",
    `inquiry time-out, ms (default ${defaultTimings.inquiryTimeoutMs})`,
  ),
  "base-ms": Cli.text(
    "base-ms",
    "N",
    `base election delay, ms (default ${defaultTimings.baseDelayMs})`,
  ),
  "floor-ms": Cli.text(
    "floor-ms",
    "N",
    `floor of the election delay, ms (default ${defaultTimings.floorDelayMs})`,
  ),
  "cluster-key": Cli.text("cluster-key", "FILE", "the group's key (mode 0600, from keygen)"),
  insecure: Cli.toggle("insecure", "run without a key (a warning says so)"),
  "data-dir": Cli.text("data-dir", "DIR", "this server's write-ahead log (DIR/ID.wal)"),
  reads: Cli.text("reads", "index|lease", "how GET /kv/KEY is confirmed (default index)"),
  out: Cli.text("out", "FILE", "where keygen writes the key"),
}

/**
 * A subcommand with the flags it takes; its handler checks them together (`check`, below:
 * called through a function, as it is defined later).
 */
const subcommand = Cli.subcommands(flags, (command, values) => check(command, values))

const parseStore = (text: string | undefined, flag: string): Address.StreamAddress | string => {
  if (text === undefined) return `${flag} is required`
  const parsed = Address.parseStream(text)
  return parsed instanceof Address.InvalidAddress ? `${flag} ${text}: ${parsed.reason}` : parsed
}

const parseStoreLocation = (text: string | undefined): StoreLocation | string => {
  if (text?.startsWith("etcd://")) {
    const hostPort = text.slice("etcd://".length)
    const parsed = Address.parseStream(`tcp://${hostPort}`)
    if (parsed instanceof Address.InvalidAddress) return `--store ${text}: ${parsed.reason}`
    return { _tag: "Etcd", endpoint: `http://${hostPort}` }
  }
  const address = parseStore(text, "--store")
  return typeof address === "string" ? address : { _tag: "Remote", address }
}

const commandLine = Command.make(programName).pipe(
  Command.withDescription(Cli.description(usage)),
  Command.withSubcommands([
    subcommand(
      "serve",
      [
        "id",
        "peers",
        "http",
        "store",
        "capacity",
        "group",
        "detect-ms",
        "inquiry-ms",
        "base-ms",
        "floor-ms",
        "cluster-key",
        "insecure",
        "data-dir",
        "reads",
      ],
      "Runs one server of a replicated key-value group",
    ),
    subcommand(
      "nameserver",
      ["listen", "cluster-key", "insecure"],
      "Runs the embedded name server: a store server over a memory store",
    ),
    subcommand("keygen", ["out"], "Writes a new random cluster key (mode 0600)"),
    subcommand(
      "load",
      ["store", "group", "duration", "rate", "concurrency", "record", "deadline", "cluster-key"],
      "Writes keys to the master at a rate, then prints one JSON summary",
    ),
  ]),
)

/**
 * Parses the arguments after the program name. Never throws: bad input is a `UsageError`
 * whose message says what is wrong.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (argv: ReadonlyArray<string>): Invocation =>
  Cli.parse<Invocation>(commandLine, argv, {
    noCommand: "no command: serve, nameserver, load or keygen",
  })

/** The flags of `command`, checked together. */
const check = (command: string, values: ReadonlyMap<string, string>): Invocation => {
  if (command === "keygen") {
    const out = values.get("--out")
    return out === undefined ? fail("--out is required") : { _tag: "KeyGen", out }
  }
  const group = values.get("--group") ?? "kv"
  if (!idPattern.test(group))
    return fail(`--group ${JSON.stringify(group)}: use letters, digits, '_', '-'`)

  const clusterKey = values.get("--cluster-key")
  const insecure = values.has("--insecure")
  if (clusterKey !== undefined && insecure) {
    return fail("--cluster-key and --insecure exclude each other")
  }
  if (command === "nameserver") {
    const listen = parseStore(values.get("--listen"), "--listen")
    if (typeof listen === "string") return fail(listen)
    if (clusterKey === undefined && !insecure) {
      return fail(
        "nameserver needs --cluster-key FILE (the group's key, made with keygen), or --insecure to let anyone register a master",
      )
    }
    return { _tag: "NameServer", listen, clusterKey, insecure }
  }
  const store = parseStoreLocation(values.get("--store"))
  if (typeof store === "string") return fail(store)

  if (command === "load") {
    const durationText = values.get("--duration") ?? "10s"
    const durationMs = parseDuration(durationText)
    if (durationMs === undefined)
      return fail(`--duration ${durationText}: expected e.g. 10s, 500ms, 2m`)
    const deadlineText = values.get("--deadline") ?? "10s"
    const deadlineMs = parseDuration(deadlineText)
    if (deadlineMs === undefined) return fail(`--deadline ${deadlineText}: expected e.g. 10s`)
    const rateText = values.get("--rate") ?? "200"
    const rate = Cli.parseInteger(rateText, 1, 100_000)
    if (rate === undefined) return fail(`--rate ${rateText}: expected writes per second, 1..100000`)
    const concurrencyText = values.get("--concurrency") ?? "8"
    const concurrency = Cli.parseInteger(concurrencyText, 1, 1_000)
    if (concurrency === undefined) return fail(`--concurrency ${concurrencyText}: expected 1..1000`)
    return {
      _tag: "Load",
      store,
      group,
      durationMs,
      rate,
      concurrency,
      record: values.get("--record"),
      deadlineMs,
      clusterKey,
    }
  }

  // serve
  const id = values.get("--id")
  if (id === undefined) return fail("--id is required")
  const peersText = values.get("--peers")
  if (peersText === undefined) return fail("--peers is required")
  const parsedPeers = parsePeers(peersText)
  if (typeof parsedPeers === "string") return fail(parsedPeers)
  let peers = parsedPeers.peers
  const own = peers.find((peer) => peer.id === id)
  if (own === undefined) return fail(`--id ${id} is not in --peers`)
  const capacityText = values.get("--capacity")
  if (capacityText !== undefined) {
    const capacity = parseCapacity(capacityText)
    if (typeof capacity === "string") return fail(`--capacity: ${capacity}`)
    if (
      parsedPeers.explicit.has(id) &&
      (own.cpu !== capacity.cpu || own.bandwidthMbps !== capacity.bandwidthMbps)
    ) {
      return fail(`--capacity disagrees with the capacity of ${id} in --peers`)
    }
    peers = peers.map((peer) => (peer.id === id ? { ...peer, ...capacity } : peer))
  }
  const httpText = values.get("--http")
  if (httpText === undefined) return fail("--http is required")
  const httpMatch = /^(.+):(\d+)$/.exec(httpText)
  const httpPort = httpMatch === null ? undefined : Cli.parseInteger(httpMatch[2]!, 0, 65535)
  if (httpMatch === null || httpPort === undefined) {
    return fail(`--http ${httpText}: expected HOST:PORT`)
  }
  const timing = (flag: string, fallback: number): number | string => {
    const text = values.get(flag)
    if (text === undefined) return fallback
    return Cli.parseInteger(text, 1, 600_000) ?? `${flag} ${text}: expected milliseconds, 1..600000`
  }
  const detectionPeriodMs = timing("--detect-ms", defaultTimings.detectionPeriodMs)
  const inquiryTimeoutMs = timing("--inquiry-ms", defaultTimings.inquiryTimeoutMs)
  const baseDelayMs = timing("--base-ms", defaultTimings.baseDelayMs)
  const floorDelayMs = timing("--floor-ms", defaultTimings.floorDelayMs)
  for (const value of [detectionPeriodMs, inquiryTimeoutMs, baseDelayMs, floorDelayMs]) {
    if (typeof value === "string") return fail(value)
  }
  if (clusterKey === undefined && !insecure) {
    return fail(
      "serve needs --cluster-key FILE (make one with keygen), or --insecure to run without authentication",
    )
  }
  const reads = decodeReadMode(values.get("--reads") ?? "index")
  if (Result.isFailure(reads))
    return fail(`--reads ${values.get("--reads")}: expected index or lease`)
  return {
    _tag: "Serve",
    id,
    peers,
    http: { host: httpMatch[1]!, port: httpPort },
    store,
    group,
    timings: {
      detectionPeriodMs: detectionPeriodMs as number,
      inquiryTimeoutMs: inquiryTimeoutMs as number,
      baseDelayMs: baseDelayMs as number,
      floorDelayMs: floorDelayMs as number,
    },
    clusterKey,
    insecure,
    dataDir: values.get("--data-dir"),
    reads: reads.success,
  }
}
