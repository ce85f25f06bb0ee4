/**
 * The command line of `takeover-stream`, on `effect/cli` (through the apps' kit): `parse` is
 * a pure function from argv to what to do, so every flag and every error is unit tested
 * without a process. `--metrics` and `--otlp` are taken off first (`Observability.takeFlags`).
 *
 * @since 0.1.0
 */
import { Cli } from "@understudy/app-kit"
import { CheckpointStore } from "@understudy/checkpoint"
import { Address, Observability } from "@understudy/transport"
import { Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"

/** @since 0.1.0 */
export const programName = "takeover-stream"

/**
 * The key that authenticates transfers, resumes and the store: a key file (0600), or
 * `--insecure` (a warning says so).
 *
 * @since 0.1.0
 * @category models
 */
export type Key =
  | { readonly _tag: "KeyFile"; readonly path: string }
  | { readonly _tag: "Insecure" }

/**
 * Where the servers keep checkpoints, leases and the service's name: the embedded store
 * (`--store tcp://HOST:PORT`) or etcd (`--etcd URL,...`).
 *
 * @since 0.1.0
 * @category models
 */
export type StoreLocation =
  | { readonly _tag: "Store"; readonly address: Address.StreamAddress }
  | { readonly _tag: "Etcd"; readonly endpoints: ReadonlyArray<string> }

/**
 * Where a client finds the service: a list of servers (`--service`), or the server that holds
 * the service's name on the name server of the servers' store.
 *
 * @since 0.1.0
 * @category models
 */
export type ServiceLocation =
  | { readonly _tag: "Servers"; readonly servers: ReadonlyArray<Address.StreamAddress> }
  | StoreLocation

/** @since 0.1.0 @category models */
export type Invocation =
  | Cli.Answer
  | { readonly _tag: "Store"; readonly listen: Address.StreamAddress; readonly key: Key }
  | {
      readonly _tag: "Serve"
      readonly id: string
      readonly listen: Address.StreamAddress
      readonly dir: string
      readonly store: StoreLocation
      readonly key: Key
      readonly everyBytes: number
      readonly leaseTtlMs: number
      readonly backend: "session" | "tcp-repair"
      /** The interface whose address a tcp-repair standby takes over. */
      readonly interfaceName: string
    }
  | {
      readonly _tag: "Get"
      readonly name: string
      readonly output: string
      readonly service: ServiceLocation
      readonly key: Key
      readonly progress: boolean
      /** Lower-case hex, checked against the object at the end. */
      readonly sha256: string | undefined
    }
  | {
      readonly _tag: "Bundle"
      readonly names: ReadonlyArray<string>
      readonly dir: string
      readonly service: ServiceLocation
      readonly key: Key
      readonly paused: string | undefined
      readonly udp: ReadonlyArray<string>
      readonly multicast: ReadonlyArray<string>
      readonly multicastInterface: string | undefined
    }
  | {
      readonly _tag: "Handoff"
      readonly from: string
      readonly to: string | undefined
      readonly store: StoreLocation
      readonly key: Key
      readonly onStdin: boolean
    }

/** @since 0.1.0 */
export const usage = `Usage:
  ${programName} store --listen tcp://HOST:PORT (--key-file FILE | --insecure)
  ${programName} serve --id ID --listen tcp://HOST:PORT --dir DIR (--store tcp://HOST:PORT | --etcd URL)
                 (--key-file FILE | --insecure) [--every-bytes N] [--lease-ms N]
                 [--backend session|tcp-repair] [--interface NAME]
  ${programName} get NAME -o FILE (--service tcp://HOST:PORT,... | --store tcp://HOST:PORT | --etcd URL)
                 (--key-file FILE | --insecure) [--progress] [--sha256 HEX]
  ${programName} bundle NAME... -o DIR (--service tcp://HOST:PORT,... | --store tcp://HOST:PORT | --etcd URL)
                 (--key-file FILE | --insecure)
                 [--paused NAME] [--udp NAME]... [--multicast NAME]... [--multicast-interface ADDR]
  ${programName} handoff --from ID [--to ID] (--store tcp://HOST:PORT | --etcd URL) (--key-file FILE | --insecure)
                 [--on-stdin]
  ${programName} --help

store   the embedded store (memory) the servers keep checkpoints and leases in.
serve   serves the files of DIR by name. Its transfers are checkpointed (every N bytes, default
        4 MiB); when it dies its lease lapses (--lease-ms, default 1000) and another server of
        the service takes them over at the exact byte. --backend tcp-repair (Linux, root):
        plain HTTP/1.1 GET for unmodified clients (curl, wget); the server that holds the
        --listen address serves, the others stand by and take over the very TCP connection
        (and the address, on --interface, default eth0) when its server dies.
        A session server contends for the service's name on the store's name server
        ({"t":"named","epoch":N} when it holds it, {"t":"unnamed",...} when it lost it).
get     downloads NAME into FILE from the service, resuming across takeovers: the servers of
        --service in turn, or (--store / --etcd) the one that holds the service's name on the
        store's name server, asked again before each reconnection. Prints {"t":"opened",
        "size":N,"server":...} once the transfer opened, {"t":"resumed",...} per takeover and {"t":"done","bytes":N,"sha256":"..."} at the end.
        --sha256 HEX: checks the object against it ("match" in the done line; exit 1 if not).
        --progress: on stderr, a bar (percent, bytes, rate) on a terminal, else a line per 10%.
bundle  one control connection and a data connection per NAME, taken over as one bundle:
        LISTs the objects ({"t":"list",...}), GETs each NAME into DIR/NAME ({"t":"transfer",
        "channel":...}), and reads commands from stdin, one a line: "pause CHANNEL", "resume
        CHANNEL" ({"t":"paused"|"unpaused","channel":...}); a paused transfer stays paused across
        takeovers. --paused NAME: that transfer starts paused. --udp NAME: that transfer's data
        goes over UDP; --multicast NAME: to a multicast group the server picks, received on
        --multicast-interface (default: the system's; 127.0.0.1 when all runs on one host).
        {"t":"done","name":...,"sha256":...} per object, {"t":"finished"} at the end.
handoff asks server --from to hand its live transfers off (a drain, a rolling restart, an
        overload): each is checkpointed where it stands and its client sent to --to (or to the
        next server of its list), which resumes it at the exact byte. Prints {"t":"handoff",
        "from":...} once asked. --on-stdin: started and on the store, it prints {"t":"ready"}
        and hands off at the first line on stdin (a script starts it ahead, then picks the
        moment; stdin closed without a line: exit 1, no hand-off).

store, serve, get and bundle also take:
${Observability.usage}

Exit codes: 0 ok; 1 runtime error (a refused takeover, a SHA-256 other than --sha256 included);
2 bad usage.`

const fail = Cli.usageError

const flags = {
  listen: Cli.text("listen", "tcp://HOST:PORT", "where this program listens"),
  id: Cli.text("id", "ID", "this server's id (letters, digits, - and _)"),
  dir: Cli.text("dir", "DIR", "the directory whose files are served by name"),
  store: Cli.text("store", "tcp://HOST:PORT", "the embedded store (takeover-stream store)"),
  etcd: Cli.text("etcd", "URL,...", "an etcd cluster instead of the embedded store"),
  "key-file": Cli.text("key-file", "FILE", "the cluster key (mode 0600)"),
  insecure: Cli.toggle("insecure", "run without a key (a warning says so)"),
  "every-bytes": Cli.text("every-bytes", "N", "checkpoint every N bytes (default 4 MiB)"),
  "lease-ms": Cli.text("lease-ms", "N", "the server's lease, ms (default 1000)"),
  backend: Cli.text("backend", "session|tcp-repair", "what is taken over (default session)"),
  interface: Cli.text("interface", "NAME", "tcp-repair: the interface of the address (eth0)"),
  service: Cli.text("service", "tcp://HOST:PORT,...", "the service's servers, in order"),
  progress: Cli.toggle("progress", "show progress on stderr"),
  sha256: Cli.text("sha256", "HEX", "the object's SHA-256, checked at the end"),
  paused: Cli.text("paused", "NAME", "that transfer starts paused"),
  "multicast-interface": Cli.text(
    "multicast-interface",
    "ADDR",
    "where multicast transfers are received",
  ),
  from: Cli.text("from", "ID", "the server that hands its transfers off"),
  to: Cli.text("to", "ID", "the server that takes them (default: the next one)"),
  "on-stdin": Cli.toggle("on-stdin", "hand off at the first line on stdin"),
}

/** `-o FILE` / `--output FILE`: required by get and bundle, checked in `check`. */
const output = Flag.String("output").pipe(
  Flag.withAlias("o"),
  Flag.withMetavar("FILE"),
  Flag.withDescription("where the download goes (bundle: a directory)"),
  Flag.optional,
)

/** A flag given any number of times (`--udp a --udp b`). */
const repeated = (name: string, description: string) =>
  Flag.String(name).pipe(
    Flag.withMetavar("NAME"),
    Flag.withDescription(description),
    Flag.atLeast(0),
  )

type Flags = typeof flags
type Values = ReadonlyMap<string, string>

/** The flags `names` of the table, as `Cli.given` reads them. */
const pick = (names: ReadonlyArray<keyof Flags>) => {
  const taken: Partial<Record<keyof Flags, Cli.CheckedFlag>> = {}
  for (const name of names) taken[name] = flags[name]
  return taken as Record<string, Cli.CheckedFlag>
}

/** The values of the flags given, or a usage error (`--name=` with no value). */
const valuesOf = (input: Record<string, unknown>, names: ReadonlyArray<string>) =>
  Cli.given(
    Object.fromEntries(names.map((name) => [name, input[name] as Option.Option<string> | boolean])),
  )

const serverFlags = [
  "listen",
  "id",
  "dir",
  "store",
  "etcd",
  "key-file",
  "insecure",
  "every-bytes",
  "lease-ms",
  "backend",
  "interface",
] as const
const clientFlags = ["service", "store", "etcd", "key-file", "insecure"] as const

const commandLine = Command.make(programName).pipe(
  Command.withDescription(Cli.description(usage)),
  Command.withSubcommands([
    Command.make("store", pick(["listen", "key-file", "insecure"]), (input) =>
      Cli.choose(checked(valuesOf(input, ["listen", "key-file", "insecure"]), store)),
    ).pipe(Command.withDescription("Runs the embedded store")),
    Command.make("serve", pick(serverFlags), (input) =>
      Cli.choose(checked(valuesOf(input, serverFlags), serve)),
    ).pipe(Command.withDescription("Serves the files of DIR, its transfers checkpointed")),
    Command.make(
      "get",
      {
        ...pick([...clientFlags, "progress", "sha256"]),
        output,
        name: Argument.String("NAME").pipe(Argument.withDescription("the object")),
      },
      (input) =>
        Cli.choose(
          checked(valuesOf(input, [...clientFlags, "progress", "sha256"]), (values) =>
            get(values, input.name, Option.getOrUndefined(input.output)),
          ),
        ),
    ).pipe(Command.withDescription("Downloads NAME into FILE, resuming across takeovers")),
    Command.make(
      "bundle",
      {
        ...pick([...clientFlags, "paused", "multicast-interface"]),
        output,
        udp: repeated("udp", "that transfer's data goes over UDP"),
        multicast: repeated("multicast", "that transfer's data goes to a multicast group"),
        names: Argument.String("NAME").pipe(
          Argument.withDescription("the objects"),
          Argument.variadic(),
        ),
      },
      (input) =>
        Cli.choose(
          checked(valuesOf(input, [...clientFlags, "paused", "multicast-interface"]), (values) =>
            bundle(values, {
              names: input.names,
              dir: Option.getOrUndefined(input.output),
              udp: input.udp,
              multicast: input.multicast,
            }),
          ),
        ),
    ).pipe(Command.withDescription("Downloads several objects as one bundle")),
    Command.make(
      "handoff",
      pick(["from", "to", "store", "etcd", "key-file", "insecure", "on-stdin"]),
      (input) =>
        Cli.choose(
          checked(
            valuesOf(input, ["from", "to", "store", "etcd", "key-file", "insecure", "on-stdin"]),
            handoff,
          ),
        ),
    ).pipe(Command.withDescription("Asks a server to hand its live transfers off")),
  ]),
)

/**
 * Parses the arguments after the program name (without `--metrics` / `--otlp`). Never
 * throws: bad input is a `UsageError` whose message says what is wrong.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (argv: ReadonlyArray<string>): Invocation =>
  Cli.parse<Invocation>(commandLine, argv, {
    noCommand: "no command: store, serve, get, bundle or handoff",
  })

const checked = (
  values: Values | Cli.UsageError,
  check: (values: Values) => Invocation,
): Invocation => (values instanceof Map ? check(values) : (values as Cli.UsageError))

const address = (text: string | undefined, flag: string): Address.StreamAddress | string => {
  if (text === undefined) return `${flag} is required`
  const parsed = Address.parseStream(text)
  return parsed instanceof Address.InvalidAddress ? `${flag}: ${parsed.reason}` : parsed
}

const keyOf = (values: Values): Key | string => {
  const path = values.get("--key-file")
  const insecure = values.has("--insecure")
  if (path !== undefined && insecure) return "--key-file and --insecure exclude each other"
  if (path !== undefined) return { _tag: "KeyFile", path }
  if (insecure) return { _tag: "Insecure" }
  return "give --key-file FILE, or --insecure to run unauthenticated"
}

const storeOf = (values: Values): StoreLocation | string => {
  const etcd = values.get("--etcd")
  const store = values.get("--store")
  if (etcd !== undefined && store !== undefined) return "--store and --etcd exclude each other"
  if (etcd !== undefined) {
    const endpoints = etcd.split(",").filter((endpoint) => endpoint !== "")
    return endpoints.length === 0 ? "--etcd needs a URL" : { _tag: "Etcd", endpoints }
  }
  if (store === undefined) return "--store or --etcd is required"
  const parsed = address(store, "--store")
  return typeof parsed === "string" ? parsed : { _tag: "Store", address: parsed }
}

const serviceOf = (values: Values): ServiceLocation | string => {
  const service = values.get("--service")
  if (service === undefined) {
    if (!values.has("--store") && !values.has("--etcd"))
      return "--service, --store or --etcd is required"
    return storeOf(values)
  }
  const servers: Array<Address.StreamAddress> = []
  for (const text of service.split(",").filter((s) => s !== "")) {
    const parsed = address(text, "--service")
    if (typeof parsed === "string") return parsed
    servers.push(parsed)
  }
  return servers.length === 0 ? "--service is required" : { _tag: "Servers", servers }
}

const positiveInteger = (values: Values, flag: string, fallback: number): number | string => {
  const text = values.get(flag)
  if (text === undefined) return fallback
  return Cli.parseInteger(text, 1, Number.MAX_SAFE_INTEGER) ?? `${flag} must be a positive integer`
}

const isServerId = (id: string | undefined): id is string =>
  id !== undefined && CheckpointStore.idPattern.test(id)

const store = (values: Values): Invocation => {
  const listen = address(values.get("--listen"), "--listen")
  if (typeof listen === "string") return fail(listen)
  const key = keyOf(values)
  return typeof key === "string" ? fail(key) : { _tag: "Store", listen, key }
}

const serve = (values: Values): Invocation => {
  const id = values.get("--id")
  if (!isServerId(id)) return fail("--id ID is required (letters, digits, - and _)")
  const listen = address(values.get("--listen"), "--listen")
  if (typeof listen === "string") return fail(listen)
  const dir = values.get("--dir")
  if (dir === undefined) return fail("--dir is required")
  const everyBytes = positiveInteger(values, "--every-bytes", 4 * 1024 * 1024)
  if (typeof everyBytes === "string") return fail(everyBytes)
  const leaseTtlMs = positiveInteger(values, "--lease-ms", 1_000)
  if (typeof leaseTtlMs === "string") return fail(leaseTtlMs)
  const store = storeOf(values)
  if (typeof store === "string") return fail(store)
  const backend = values.get("--backend") ?? "session"
  if (backend !== "session" && backend !== "tcp-repair")
    return fail("--backend is session or tcp-repair")
  if (backend === "tcp-repair" && listen._tag !== "Tcp")
    return fail("--backend tcp-repair serves a TCP address")
  const key = keyOf(values)
  if (typeof key === "string") return fail(key)
  return {
    _tag: "Serve",
    id,
    listen,
    dir,
    store,
    key,
    everyBytes,
    leaseTtlMs,
    backend,
    interfaceName: values.get("--interface") ?? "eth0",
  }
}

const get = (values: Values, name: string, output: string | undefined): Invocation => {
  if (output === undefined || output === "") return fail("-o FILE is required")
  const sha256 = values.get("--sha256")?.toLowerCase()
  if (sha256 !== undefined && !/^[0-9a-f]{64}$/.test(sha256))
    return fail("--sha256 is 64 hexadecimal digits")
  const service = serviceOf(values)
  if (typeof service === "string") return fail(service)
  const key = keyOf(values)
  if (typeof key === "string") return fail(key)
  return { _tag: "Get", name, output, service, key, progress: values.has("--progress"), sha256 }
}

const bundle = (
  values: Values,
  given: {
    readonly names: ReadonlyArray<string>
    readonly dir: string | undefined
    readonly udp: ReadonlyArray<string>
    readonly multicast: ReadonlyArray<string>
  },
): Invocation => {
  if (given.names.length === 0) return fail("bundle NAME...: at least one object")
  if (given.dir === undefined || given.dir === "") return fail("-o DIR is required")
  const service = serviceOf(values)
  if (typeof service === "string") return fail(service)
  const key = keyOf(values)
  if (typeof key === "string") return fail(key)
  return {
    _tag: "Bundle",
    names: given.names,
    dir: given.dir,
    service,
    key,
    paused: values.get("--paused"),
    udp: given.udp,
    multicast: given.multicast,
    multicastInterface: values.get("--multicast-interface"),
  }
}

const handoff = (values: Values): Invocation => {
  const from = values.get("--from")
  if (!isServerId(from)) return fail("--from ID is required (letters, digits, - and _)")
  const to = values.get("--to")
  if (to !== undefined && !isServerId(to)) return fail("--to ID: letters, digits, - and _")
  const store = storeOf(values)
  if (typeof store === "string") return fail(store)
  const key = keyOf(values)
  if (typeof key === "string") return fail(key)
  return { _tag: "Handoff", from, to, store, key, onStdin: values.has("--on-stdin") }
}
