/**
 * The `takeover-stream` program: an object server whose transfers survive the death of
 * their server. `store` runs the embedded store the servers share; `serve` serves the files
 * of a directory; `get` downloads one (with a progress bar and a SHA-256 at the end) from
 * a list of servers or the one the store's name server names, riding through takeovers. Every command reports on stdout with one
 * JSON object per line. See `--help`.
 *
 * @since 0.1.0
 */
import { createHash, type Hash } from "node:crypto"
import { createWriteStream, type WriteStream } from "node:fs"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { parseArgs } from "node:util"
import { CheckpointStore, Discovery, ObjectBundle, ObjectSession } from "@understudy/checkpoint"
import { MemoryStore, NameServer, RemoteStore, Store, StoreServer } from "@understudy/store"
import { EtcdStore } from "@understudy/store/etcd"
import { Address, ClusterKey, NodeTransport, Observability } from "@understudy/transport"
import { Effect, Fiber, Layer, type Redacted, type Scope, Stream } from "effect"
import * as Progress from "./progress.ts"
import * as TcpRepairServer from "./tcpRepair.ts"

const programName = "takeover-stream"

const usage = `Usage:
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

const line = (value: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(value)}\n`)

/** Resolves at the first line on stdin; rejects if stdin ends without one. */
const firstLine = () =>
  new Promise<void>((resolve, reject) => {
    const lines = createInterface({ input: process.stdin })
    lines.once("line", () => {
      resolve() // before close(): its "close" event would reject first
      lines.close()
    })
    lines.once("close", () => reject(new Error("stdin closed before a line")))
  })

class UsageError extends Error {}

const stream = (text: string | undefined, flag: string): Address.StreamAddress => {
  if (text === undefined) throw new UsageError(`${flag} is required`)
  const parsed = Address.parseStream(text)
  if (parsed instanceof Address.InvalidAddress) throw new UsageError(`${flag}: ${parsed.reason}`)
  return parsed
}

/** The service this program's servers run (checkpoint keys, the name server's name). */
const serviceName = "takeover-stream"

/** The store servers and commands share: `--store tcp://HOST:PORT` or `--etcd URL,...`. */
const storeLayerOf = (
  values: { readonly store?: string | undefined; readonly etcd?: string | undefined },
  clusterKey: Redacted.Redacted<Uint8Array> | undefined,
): Layer.Layer<Store.Store> =>
  // Default timings and a key: nothing a store layer's config check can refuse.
  values.etcd !== undefined
    ? EtcdStore.layer({ endpoints: values.etcd.split(",") }).pipe(Layer.orDie)
    : RemoteStore.layer({
        address: stream(values.store, "--store"),
        ...(clusterKey === undefined ? {} : { clusterKey }),
      }).pipe(Layer.orDie, Layer.provide(NodeTransport.layer))

/**
 * A client's service: the `--service` address list, or the server that holds the service's
 * name on the name server of the servers' store (`--store` / `--etcd`, keyed like them).
 */
const serviceOf = (
  values: {
    readonly service?: string | undefined
    readonly store?: string | undefined
    readonly etcd?: string | undefined
  },
  clusterKey: Redacted.Redacted<Uint8Array> | undefined,
): Effect.Effect<Discovery.Service, never, Scope.Scope> => {
  if (values.service === undefined) {
    if (values.store === undefined && values.etcd === undefined)
      throw new UsageError("--service, --store or --etcd is required")
    return Effect.gen(function* () {
      const names = yield* Layer.build(
        NameServer.layer.pipe(Layer.provide(storeLayerOf(values, clusterKey))),
      )
      return yield* Discovery.nameServer(serviceName).pipe(Effect.provide(names))
    })
  }
  const service = values.service
    .split(",")
    .filter((s) => s !== "")
    .map((s) => stream(s, "--service"))
  if (service.length === 0) throw new UsageError("--service is required")
  return Effect.succeed(service)
}

const positiveInteger = (text: string | undefined, flag: string, fallback: number): number => {
  if (text === undefined) return fallback
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value <= 0)
    throw new UsageError(`${flag} must be a positive integer`)
  return value
}

const keyOf = (
  file: string | undefined,
  insecure: boolean | undefined,
): Effect.Effect<Redacted.Redacted<Uint8Array> | undefined, unknown> => {
  if (file !== undefined) return ClusterKey.readFile(file)
  if (insecure !== true)
    return Effect.fail(new UsageError("give --key-file FILE, or --insecure to run unauthenticated"))
  return Effect.sync(() => {
    process.stderr.write(
      `${programName}: warning: --insecure: transfers and resumes are not authenticated\n`,
    )
    line({ t: "warning", warning: "insecure" })
    return undefined
  })
}

/** Hashes a chunk and writes it to `file`, done when the file took it. */
const hashedWrite = (file: WriteStream, hash: Hash, chunk: Uint8Array) =>
  Effect.promise(() => {
    hash.update(chunk)
    return new Promise<void>((resolve, reject) =>
      file.write(chunk, (error) => (error ? reject(error) : resolve())),
    )
  })

/** Runs a server until the process is killed, with `layer` (metrics, traces) all along. */
const runForever = <E, E2>(
  effect: Effect.Effect<unknown, E, Scope.Scope>,
  layer: Layer.Layer<never, E2>,
) =>
  Effect.runPromise(Effect.scoped(Effect.andThen(effect, Effect.never)).pipe(Effect.provide(layer)))

const main = async (args: ReadonlyArray<string>): Promise<number> => {
  // --metrics and --otlp, for every command that runs a while.
  const taken = Observability.takeFlags(args)
  if (taken._tag === "UsageError") throw new UsageError(taken.message)
  const observability = Observability.layer(taken.flags, programName)
  const observed = Effect.provide(observability)
  const [command, ...rest] = taken.argv
  if (command === undefined || command === "--help" || command === "-h") {
    process.stdout.write(`${usage}\n`)
    return command === undefined ? 2 : 0
  }
  const { values, positionals } = parseArgs({
    args: rest as Array<string>,
    allowPositionals: true,
    options: {
      listen: { type: "string" },
      id: { type: "string" },
      dir: { type: "string" },
      store: { type: "string" },
      etcd: { type: "string" },
      "key-file": { type: "string" },
      insecure: { type: "boolean" },
      "every-bytes": { type: "string" },
      "lease-ms": { type: "string" },
      backend: { type: "string" },
      interface: { type: "string" },
      service: { type: "string" },
      output: { type: "string", short: "o" },
      progress: { type: "boolean" },
      sha256: { type: "string" },
      paused: { type: "string" },
      udp: { type: "string", multiple: true },
      multicast: { type: "string", multiple: true },
      "multicast-interface": { type: "string" },
      from: { type: "string" },
      to: { type: "string" },
      "on-stdin": { type: "boolean" },
    },
  })
  switch (command) {
    case "store": {
      const listen = stream(values.listen, "--listen")
      await runForever(
        Effect.gen(function* () {
          const clusterKey = yield* keyOf(values["key-file"], values.insecure)
          const server = yield* StoreServer.serve(
            listen,
            clusterKey === undefined ? {} : { clusterKey },
          )
          line({ t: "ready", address: Address.format(server.address) })
        }).pipe(Effect.provide(Layer.merge(MemoryStore.layer, NodeTransport.layer))),
        observability,
      )
      return 0
    }
    case "serve": {
      const id = values.id
      if (id === undefined || !CheckpointStore.idPattern.test(id))
        throw new UsageError("--id ID is required (letters, digits, - and _)")
      const listen = stream(values.listen, "--listen")
      const dir = values.dir
      if (dir === undefined) throw new UsageError("--dir is required")
      const everyBytes = positiveInteger(values["every-bytes"], "--every-bytes", 4 * 1024 * 1024)
      const leaseTtlMs = positiveInteger(values["lease-ms"], "--lease-ms", 1_000)
      if (values.store === undefined && values.etcd === undefined)
        throw new UsageError("--store or --etcd is required")
      const backend = values.backend ?? "session"
      if (backend !== "session" && backend !== "tcp-repair")
        throw new UsageError("--backend is session or tcp-repair")
      if (backend === "tcp-repair" && listen._tag !== "Tcp")
        throw new UsageError("--backend tcp-repair serves a TCP address")
      await runForever(
        Effect.gen(function* () {
          const clusterKey = yield* keyOf(values["key-file"], values.insecure)
          const storeLayer = storeLayerOf(values, clusterKey)
          if (backend === "tcp-repair" && listen._tag === "Tcp")
            return yield* TcpRepairServer.serve({
              id,
              listen,
              dir,
              interfaceName: values.interface ?? "eth0",
              everyBytes,
              leaseTtlMs,
              store: storeLayer,
              line,
            })
          // Built in the command's scope: the store lives as long as the server.
          const stores = yield* Layer.build(storeLayer)
          const server = yield* ObjectSession.serve(
            {
              listen,
              ...(clusterKey === undefined ? { insecure: true } : { clusterKey }),
              policy: { everyBytes, every: "200 millis", objectBoundaries: true },
            },
            ObjectSession.fileSource(dir),
          ).pipe(
            Effect.provideServiceEffect(
              CheckpointStore.CheckpointStore,
              CheckpointStore.make({
                serverId: id,
                backend: "session",
                prefix: CheckpointStore.defaultPrefix(serviceName),
                leaseTtl: leaseTtlMs,
                address: Address.format(listen),
              }),
            ),
            Effect.provide(stores),
          )
          line({ t: "ready", id, address: Address.format(server.address), pid: process.pid })
          // For clients that find the service through the name server (get --store).
          yield* Discovery.advertise({
            service: serviceName,
            serverId: id,
            address: server.address,
            ttl: leaseTtlMs,
            onChange: (event) => line({ t: event.held ? "named" : "unnamed", id, ...event }),
          }).pipe(Effect.provide(NameServer.layer), Effect.provide(stores))
        }).pipe(Effect.provide(NodeTransport.layer)),
        observability,
      )
      return 0
    }
    case "handoff": {
      const from = values.from
      if (from === undefined || !CheckpointStore.idPattern.test(from))
        throw new UsageError("--from ID is required (letters, digits, - and _)")
      const to = values.to
      if (to !== undefined && !CheckpointStore.idPattern.test(to))
        throw new UsageError("--to ID: letters, digits, - and _")
      if (values.store === undefined && values.etcd === undefined)
        throw new UsageError("--store or --etcd is required")
      await Effect.runPromise(
        Effect.gen(function* () {
          const clusterKey = yield* keyOf(values["key-file"], values.insecure)
          const storeLayer = storeLayerOf(values, clusterKey)
          const keys = CheckpointStore.keys(CheckpointStore.defaultPrefix(serviceName))
          yield* Effect.gen(function* () {
            const store = yield* Store.Store
            if (values["on-stdin"] === true) {
              // The process's start takes seconds on a loaded machine; from here the hand-off
              // is one put away.
              line({ t: "ready", from })
              yield* Effect.promise(firstLine)
            }
            yield* store.put(keys.handoff(from), new TextEncoder().encode(to ?? ""))
          }).pipe(Effect.provide(storeLayer))
          line({ t: "handoff", from, ...(to === undefined ? {} : { to }) })
        }).pipe(Effect.provide(NodeTransport.layer)),
      )
      return 0
    }
    case "get": {
      const name = positionals[0]
      if (name === undefined) throw new UsageError("get NAME: the object's name is required")
      const output = values.output
      if (output === undefined) throw new UsageError("-o FILE is required")
      const expected = values.sha256?.toLowerCase()
      if (expected !== undefined && !/^[0-9a-f]{64}$/.test(expected))
        throw new UsageError("--sha256 is 64 hexadecimal digits")
      const hash = createHash("sha256")
      const file = createWriteStream(output)
      let bytes = 0
      const progress =
        values.progress === true
          ? Progress.reporter({
              tty: process.stderr.isTTY === true,
              write: (text) => void process.stderr.write(text),
              now: () => performance.now(),
              label: programName,
            })
          : undefined
      await Effect.runPromise(
        Effect.gen(function* () {
          const clusterKey = yield* keyOf(values["key-file"], values.insecure)
          yield* ObjectSession.get(name, {
            service: yield* serviceOf(values, clusterKey),
            ...(clusterKey === undefined ? { insecure: true } : { clusterKey }),
            onOpened: (event) => {
              line({ t: "opened", ...event })
              progress?.sized(event.size)
            },
            onResumed: (event) => line({ t: "resumed", ...event }),
          }).pipe(
            Stream.runForEach((chunk) => {
              bytes += chunk.length
              progress?.progress(bytes)
              return hashedWrite(file, hash, chunk)
            }),
          )
        }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer), observed),
      )
      await new Promise<void>((resolve, reject) =>
        file.end((error?: Error | null) => (error ? reject(error) : resolve())),
      )
      progress?.done()
      const sha256 = hash.digest("hex")
      if (expected === undefined) {
        line({ t: "done", bytes, sha256 })
        return 0
      }
      line({ t: "done", bytes, sha256, match: sha256 === expected })
      if (sha256 === expected) return 0
      process.stderr.write(`${programName}: SHA-256 ${sha256}, expected ${expected}\n`)
      return 1
    }
    case "bundle": {
      if (positionals.length === 0) throw new UsageError("bundle NAME...: at least one object")
      const dir = values.output
      if (dir === undefined) throw new UsageError("-o DIR is required")
      await Effect.runPromise(
        Effect.gen(function* () {
          const clusterKey = yield* keyOf(values["key-file"], values.insecure)
          const client = yield* ObjectBundle.connect({
            service: yield* serviceOf(values, clusterKey),
            ...(clusterKey === undefined ? { insecure: true } : { clusterKey }),
            onResumed: (event) => line({ t: "resumed", ...event }),
            ...(values["multicast-interface"] === undefined
              ? {}
              : { multicastInterface: values["multicast-interface"] }),
          })
          line({ t: "list", objects: yield* client.list })
          const readers: Array<Fiber.Fiber<unknown, unknown>> = []
          for (const name of positionals) {
            const transport = values.multicast?.includes(name)
              ? ("udp-multicast" as const)
              : values.udp?.includes(name)
                ? ("udp" as const)
                : ("tcp" as const)
            const download = yield* client.get(name, { paused: values.paused === name, transport })
            line({
              t: "transfer",
              channel: download.transfer,
              name,
              size: download.size,
              transport,
            })
            const hash = createHash("sha256")
            const file = createWriteStream(join(dir, name))
            let bytes = 0
            readers.push(
              yield* Effect.forkScoped(
                download.bytes.pipe(
                  Stream.runForEach((chunk) => {
                    bytes += chunk.length
                    return hashedWrite(file, hash, chunk)
                  }),
                  Effect.andThen(
                    Effect.promise(() => new Promise<void>((resolve) => file.end(() => resolve()))),
                  ),
                  Effect.andThen(
                    Effect.sync(() => line({ t: "done", name, bytes, sha256: hash.digest("hex") })),
                  ),
                ),
              ),
            )
          }
          // Commands from stdin, one a line, one at a time.
          const commands = createInterface({ input: process.stdin })
          yield* Effect.addFinalizer(() => Effect.sync(() => commands.close()))
          yield* Effect.forkScoped(
            Stream.fromAsyncIterable(commands, (error) => error).pipe(
              Stream.runForEach((text) => {
                const [verb, channel] = text.trim().split(/\s+/)
                if (channel === undefined || (verb !== "pause" && verb !== "resume"))
                  return Effect.sync(() => line({ t: "error", error: `unknown command ${text}` }))
                return (verb === "pause" ? client.pause(channel) : client.resume(channel)).pipe(
                  Effect.andThen(
                    Effect.sync(() =>
                      line({ t: verb === "pause" ? "paused" : "unpaused", channel }),
                    ),
                  ),
                  Effect.catchTag("CheckpointCommandFailed", (error) =>
                    Effect.sync(() => line({ t: "error", error: error.message })),
                  ),
                )
              }),
            ),
          )
          for (const reader of readers) yield* Fiber.join(reader)
          yield* client.close
          line({ t: "finished" })
        }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer), observed),
      )
      return 0
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`)
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError || (error instanceof TypeError && "code" in error)) {
      process.stderr.write(`${programName}: ${error.message}\nTry '${programName} --help'.\n`)
      process.exit(2)
    }
    process.stderr.write(
      `${programName}: ${error instanceof Error ? error.message : String(error)}\n`,
    )
    process.exit(1)
  },
)
