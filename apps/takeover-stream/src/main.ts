/**
 * The `takeover-stream` program: an object server whose transfers survive the death of
 * their server. `store` runs the embedded store the servers share; `serve` serves the files
 * of a directory; `get` downloads one (with a progress bar and a SHA-256 at the end) from
 * a list of servers or the one the store's name server names, riding through takeovers.
 * Every command reports on stdout with one JSON object per line. See `--help` (`cli.ts`).
 *
 * @since 0.1.0
 */
import { createHash, type Hash } from "node:crypto"
import { createWriteStream, type WriteStream } from "node:fs"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { Cli, ExitCode, JsonLines, Signals } from "@understudy/app-kit"
import { CheckpointStore, Discovery, ObjectBundle, ObjectSession } from "@understudy/checkpoint"
import { MemoryStore, NameServer, RemoteStore, Store, StoreServer } from "@understudy/store"
import { EtcdStore } from "@understudy/store/etcd"
import { Address, ClusterKey, NodeTransport, Observability } from "@understudy/transport"
import { Effect, Fiber, Layer, type Redacted, type Scope, Stream } from "effect"
import {
  type Invocation,
  type Key,
  parse,
  programName,
  type ServiceLocation,
  type StoreLocation,
} from "./cli.ts"
import * as Progress from "./progress.ts"
import * as TcpRepairServer from "./tcpRepair.ts"

type Command<Tag extends Invocation["_tag"]> = Extract<Invocation, { readonly _tag: Tag }>

const line = JsonLines.line

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

/** The service this program's servers run (checkpoint keys, the name server's name). */
const serviceName = "takeover-stream"

/** The key of `--key-file`, or none with `--insecure` (said on stderr and stdout). */
const keyOf = (key: Key): Effect.Effect<Redacted.Redacted<Uint8Array> | undefined, unknown> => {
  if (key._tag === "KeyFile") return ClusterKey.readFile(key.path)
  return Effect.sync(() => {
    process.stderr.write(
      `${programName}: warning: --insecure: transfers and resumes are not authenticated\n`,
    )
    line({ t: "warning", warning: "insecure" })
    return undefined
  })
}

/** The store servers and commands share: `--store tcp://HOST:PORT` or `--etcd URL,...`. */
const storeLayerOf = (
  store: StoreLocation,
  clusterKey: Redacted.Redacted<Uint8Array> | undefined,
): Layer.Layer<Store.Store> =>
  // Default timings and a key: nothing a store layer's config check can refuse.
  store._tag === "Etcd"
    ? EtcdStore.layer({ endpoints: [...store.endpoints] }).pipe(Layer.orDie)
    : RemoteStore.layer({
        address: store.address,
        ...(clusterKey === undefined ? {} : { clusterKey }),
      }).pipe(Layer.orDie, Layer.provide(NodeTransport.layer))

/**
 * A client's service: the `--service` address list, or the server that holds the service's
 * name on the name server of the servers' store (`--store` / `--etcd`, keyed like them).
 */
const serviceOf = (
  service: ServiceLocation,
  clusterKey: Redacted.Redacted<Uint8Array> | undefined,
): Effect.Effect<Discovery.Service, never, Scope.Scope> =>
  service._tag === "Servers"
    ? Effect.succeed(service.servers)
    : Effect.gen(function* () {
        const names = yield* Layer.build(
          NameServer.layer.pipe(Layer.provide(storeLayerOf(service, clusterKey))),
        )
        return yield* Discovery.nameServer(serviceName).pipe(Effect.provide(names))
      })

/** Hashes a chunk and writes it to `file`, done when the file took it. */
const hashedWrite = (file: WriteStream, hash: Hash, chunk: Uint8Array) =>
  Effect.promise(() => {
    hash.update(chunk)
    return new Promise<void>((resolve, reject) =>
      file.write(chunk, (error) => (error ? reject(error) : resolve())),
    )
  })

/** `store`: the embedded store, until a signal. */
const store = (command: Command<"Store">) =>
  Effect.gen(function* () {
    const clusterKey = yield* keyOf(command.key)
    const server = yield* StoreServer.serve(
      command.listen,
      clusterKey === undefined ? {} : { clusterKey },
    )
    line({ t: "ready", address: Address.format(server.address) })
    return yield* Effect.never
  }).pipe(Effect.scoped, Effect.provide(Layer.merge(MemoryStore.layer, NodeTransport.layer)))

/** `serve`: a server of the service, until a signal. */
const serve = (command: Command<"Serve">) =>
  Effect.gen(function* () {
    const { id, listen, everyBytes, leaseTtlMs } = command
    const clusterKey = yield* keyOf(command.key)
    const storeLayer = storeLayerOf(command.store, clusterKey)
    if (command.backend === "tcp-repair" && listen._tag === "Tcp") {
      yield* TcpRepairServer.serve({
        id,
        listen,
        dir: command.dir,
        interfaceName: command.interfaceName,
        everyBytes,
        leaseTtlMs,
        store: storeLayer,
        line,
      })
      return yield* Effect.never
    }
    // Built in the command's scope: the store lives as long as the server.
    const stores = yield* Layer.build(storeLayer)
    const server = yield* ObjectSession.serve(
      {
        listen,
        ...(clusterKey === undefined ? { insecure: true } : { clusterKey }),
        policy: { everyBytes, every: "200 millis", objectBoundaries: true },
      },
      ObjectSession.fileSource(command.dir),
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
    return yield* Effect.never
  }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer))

/** `handoff`: one put on the store, at once or at the first line on stdin. */
const handoff = (command: Command<"Handoff">) =>
  Effect.gen(function* () {
    const { from, to } = command
    const clusterKey = yield* keyOf(command.key)
    const keys = CheckpointStore.keys(CheckpointStore.defaultPrefix(serviceName))
    yield* Effect.gen(function* () {
      const store = yield* Store.Store
      if (command.onStdin) {
        // The process's start takes seconds on a loaded machine; from here the hand-off
        // is one put away.
        line({ t: "ready", from })
        yield* Effect.promise(firstLine)
      }
      yield* store.put(keys.handoff(from), new TextEncoder().encode(to ?? ""))
    }).pipe(Effect.provide(storeLayerOf(command.store, clusterKey)))
    line({ t: "handoff", from, ...(to === undefined ? {} : { to }) })
    return ExitCode.ok
  }).pipe(Effect.provide(NodeTransport.layer))

/** `get`: one object into a file, hashed; 1 when it is not the `--sha256` asked for. */
const get = (command: Command<"Get">) =>
  Effect.gen(function* () {
    const hash = createHash("sha256")
    const file = createWriteStream(command.output)
    let bytes = 0
    const progress = command.progress
      ? Progress.reporter({
          tty: process.stderr.isTTY === true,
          write: (text) => void process.stderr.write(text),
          now: () => performance.now(),
          label: programName,
        })
      : undefined
    const clusterKey = yield* keyOf(command.key)
    yield* ObjectSession.get(command.name, {
      service: yield* serviceOf(command.service, clusterKey),
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
    yield* Effect.promise(
      () =>
        new Promise<void>((resolve, reject) =>
          file.end((error?: Error | null) => (error ? reject(error) : resolve())),
        ),
    )
    progress?.done()
    const sha256 = hash.digest("hex")
    if (command.sha256 === undefined) {
      line({ t: "done", bytes, sha256 })
      return ExitCode.ok
    }
    line({ t: "done", bytes, sha256, match: sha256 === command.sha256 })
    if (sha256 === command.sha256) return ExitCode.ok
    process.stderr.write(`${programName}: SHA-256 ${sha256}, expected ${command.sha256}\n`)
    return ExitCode.failure
  }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer))

/** `bundle`: several objects over one bundle, paused and resumed by lines on stdin. */
const bundle = (command: Command<"Bundle">) =>
  Effect.gen(function* () {
    const clusterKey = yield* keyOf(command.key)
    const client = yield* ObjectBundle.connect({
      service: yield* serviceOf(command.service, clusterKey),
      ...(clusterKey === undefined ? { insecure: true } : { clusterKey }),
      onResumed: (event) => line({ t: "resumed", ...event }),
      ...(command.multicastInterface === undefined
        ? {}
        : { multicastInterface: command.multicastInterface }),
    })
    line({ t: "list", objects: yield* client.list })
    const readers: Array<Fiber.Fiber<unknown, unknown>> = []
    for (const name of command.names) {
      const transport = command.multicast.includes(name)
        ? ("udp-multicast" as const)
        : command.udp.includes(name)
          ? ("udp" as const)
          : ("tcp" as const)
      const download = yield* client.get(name, { paused: command.paused === name, transport })
      line({ t: "transfer", channel: download.transfer, name, size: download.size, transport })
      const hash = createHash("sha256")
      const file = createWriteStream(join(command.dir, name))
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
              Effect.sync(() => line({ t: verb === "pause" ? "paused" : "unpaused", channel })),
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
    return ExitCode.ok
  }).pipe(Effect.scoped, Effect.provide(NodeTransport.layer))

// --metrics and --otlp, for every command that runs a while.
const taken = Observability.takeFlags(process.argv.slice(2))
const invocation: Invocation =
  taken._tag === "Taken" ? parse(taken.argv) : Cli.usageError(taken.message)
const observed = Effect.provide(
  Observability.layer(taken._tag === "Taken" ? taken.flags : Observability.none, programName),
)
const options = { program: programName }

const main = (): Promise<number> | number => {
  switch (invocation._tag) {
    case "Help":
    case "Version":
    case "UsageError":
      return Cli.answer(programName, invocation)
    case "Store":
      return Signals.runUntilSignal(store(invocation).pipe(observed), options)
    case "Serve":
      return Signals.runUntilSignal(serve(invocation).pipe(observed), options)
    case "Get":
      return Signals.runToEnd(get(invocation).pipe(observed), options)
    case "Bundle":
      return Signals.runToEnd(bundle(invocation).pipe(observed), options)
    case "Handoff":
      return Signals.runToEnd(handoff(invocation), options)
  }
}

Cli.exitWith(programName, main)
