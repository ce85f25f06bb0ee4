/**
 * `server-group serve`: one server of the replicated key-value group, with its HTTP JSON
 * API. It prints JSON lines on stdout: `ready` once listening, then one `event` per
 * election event (who declared, at which epoch, when; who waited and how long, and why).
 *
 * @since 0.1.0
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import { join } from "node:path"
import { Authentication } from "@understudy/machine"
import { Replication, ServerGroup } from "@understudy/staggered-election"
import { NameServer } from "@understudy/store"
import { Address, ClusterKey, NodeDatagram } from "@understudy/transport"
import { Context, Effect, HashMap, Layer, Option, Redacted, Stream } from "effect"
import type { Invocation } from "./cli.ts"
import { apiToken, exitCode, line, storeLayer, tokenHeader, tokenMatches } from "./common.ts"
import * as Kv from "./kv.ts"

type Serve = Extract<Invocation, { readonly _tag: "Serve" }>

/** Bodies larger than this are refused: a value is a short string. */
const bodyBytesMax = 64 * 1024

const readBody = (request: http.IncomingMessage): Promise<string | undefined> =>
  new Promise((resolve) => {
    let size = 0
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size <= bodyBytesMax) chunks.push(chunk)
    })
    request.on("end", () =>
      resolve(size > bodyBytesMax ? undefined : Buffer.concat(chunks).toString("utf8")),
    )
    request.on("error", () => resolve(undefined))
  })

/** The path of a request target, or `undefined` if it is none (e.g. `/\\`, `//`). */
const pathOf = (target: string | undefined): string | undefined => {
  try {
    return new URL(target ?? "/", "http://localhost").pathname
  } catch {
    return undefined
  }
}

/** The key of `/kv/KEY`, or `undefined` for a malformed percent-encoding. */
const decodeKey = (encoded: string): string | undefined => {
  try {
    return decodeURIComponent(encoded)
  } catch {
    return undefined
  }
}

const reply = (
  response: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) => {
  const text = JSON.stringify(body)
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...headers,
  })
  response.end(text)
}

/** Runs the server until interrupted. @since 0.1.0 */
export const serve = (invocation: Serve): Effect.Effect<number, unknown> =>
  Effect.gen(function* () {
    const { id, peers, timings, group: groupName } = invocation
    const httpServer = http.createServer()
    httpServer.keepAliveTimeout = 5_000
    yield* Effect.acquireRelease(
      Effect.callback<void, Error>((resume) => {
        httpServer.once("error", (error) => resume(Effect.fail(error)))
        httpServer.listen(invocation.http.port, invocation.http.host, () => resume(Effect.void))
      }),
      () =>
        Effect.sync(() => {
          httpServer.closeAllConnections()
          httpServer.close()
        }),
    )
    const httpPort = (httpServer.address() as { port: number }).port
    const advertise = `http://${invocation.http.host}:${httpPort}`

    const clusterKey =
      invocation.clusterKey === undefined
        ? undefined
        : yield* ClusterKey.readFile(invocation.clusterKey)
    // The same key authenticates this server to a keyed name server (tcp://).
    const services = NameServer.layer.pipe(
      Layer.provide(storeLayer(invocation.store, clusterKey)),
      Layer.merge(NodeDatagram.layer),
    )
    const context = yield* Layer.build(services)
    // Keyed: every /kv request must carry the token (see `tokenHeader`).
    const token = clusterKey === undefined ? undefined : apiToken(Redacted.value(clusterKey))
    if (invocation.insecure) {
      process.stderr.write(
        "server-group: WARNING: --insecure: group traffic is not authenticated (any datagram from a member's address is believed), nor is the connection to the name server\n",
      )
    }
    const walFile =
      invocation.dataDir === undefined
        ? undefined
        : yield* Effect.try(() => {
            fs.mkdirSync(invocation.dataDir!, { recursive: true, mode: 0o700 })
            return join(invocation.dataDir!, `${id}.wal`)
          })
    const resolver = Context.get(context, NameServer.NameServer)
    const server = yield* ServerGroup.make<Kv.State, Kv.Request, Kv.Result>({
      group: groupName,
      self: id,
      servers: peers.map((peer) => ({
        id: peer.id,
        capacity: { cpu: peer.cpu, bandwidthMbps: peer.bandwidthMbps },
      })),
      addresses: Object.fromEntries(peers.map((peer) => [peer.id, peer.address])),
      // --insecure (parse allows no other way without a key): the runner believes source
      // addresses, and logs a warning.
      authentication:
        clusterKey === undefined ? Authentication.insecure : Authentication.keyed(clusterKey),
      ...(walFile === undefined ? {} : { walFile }),
      reads: invocation.reads === "lease" ? "lease" : "linearizable",
      request: Kv.Request,
      initial: Kv.initial,
      apply: Kv.apply,
      advertise,
      // The flags are in milliseconds (--detect-ms ...); a number is a Duration.Input in ms.
      detectionPeriod: timings.detectionPeriodMs,
      inquiryTimeout: timings.inquiryTimeoutMs,
      baseDelay: timings.baseDelayMs,
      floorDelay: timings.floorDelayMs,
      // Compacted every 10,000 applied entries (memory: the snapshot and at most the
      // un-compacted tail); the snapshot goes in 8,000-character chunks, under a datagram.
      snapshot: Replication.snapshotCodec(Kv.StateSchema, Kv.ResultSchema),
      compactEvery: 10_000,
      logEntriesMax: 100_000,
      queuedSubmitsMax: 10_000,
      registrationTtl: 1_500,
      submitTimeout: 3_000,
    }).pipe(Effect.provideContext(context))

    yield* Effect.forkScoped(
      Stream.runForEach(server.events, (event) =>
        Effect.sync(() => line({ t: "event", id, ...event })),
      ),
    )

    /** The URL of the master `master` (from the name server), if it is registered there. */
    const masterUrl = (master: string | null) =>
      resolver.resolve(groupName).pipe(
        Effect.map((found) => {
          if (Option.isNone(found)) return undefined
          const holder = ServerGroup.parseHolder(found.value.holder)
          if (holder.id === id) return undefined
          if (master !== null && holder.id !== master) return undefined
          return holder.advertise
        }),
        Effect.orElseSucceed(() => undefined),
      )

    const redirect = (response: http.ServerResponse, master: string | null, path: string) =>
      Effect.gen(function* () {
        const url = yield* masterUrl(master)
        if (url === undefined) {
          reply(response, 503, { error: "NoMaster", master }, { "retry-after": "1" })
        } else {
          reply(
            response,
            307,
            { error: "NotMaster", master, location: `${url}${path}` },
            {
              location: `${url}${path}`,
            },
          )
        }
      })

    const anonymous = `anon-${id}-${randomBytes(6).toString("hex")}`
    let anonymousRequestId = 0

    const handle = (
      request: http.IncomingMessage,
      response: http.ServerResponse,
      body: string | undefined,
    ) =>
      Effect.gen(function* () {
        const path = pathOf(request.url)
        if (path === undefined) {
          reply(response, 400, {
            error: "BadRequest",
            detail: "the request target is not a valid path",
          })
          return
        }
        if (path === "/status" && request.method === "GET") {
          reply(response, 200, yield* server.status)
          return
        }
        // /status stays open (a health check); the data needs the group's token.
        if (
          token !== undefined &&
          !tokenMatches(token, request.headers[tokenHeader] as string | undefined)
        ) {
          reply(
            response,
            401,
            {
              error: "Unauthorized",
              detail: `${tokenHeader} missing or wrong: it is derived from the group's --cluster-key`,
            },
            { "www-authenticate": `Token header="${tokenHeader}"` },
          )
          return
        }
        if (path === "/kv" && request.method === "GET") {
          const status = yield* server.status
          const state = yield* server.applied
          reply(response, 200, {
            self: id,
            role: status.role,
            epoch: status.epoch,
            appliedSeq: status.appliedSeq,
            count: HashMap.size(state),
            entries: Object.fromEntries(HashMap.toEntries(state)),
          })
          return
        }
        const match = /^\/kv\/([^/]+)$/.exec(path)
        if (match === null) {
          reply(response, 404, { error: "NotFound", path })
          return
        }
        const key = decodeKey(match[1]!)
        if (key === undefined) {
          reply(response, 400, {
            error: "BadRequest",
            detail: "the key is not valid percent-encoding",
          })
          return
        }
        if (request.method === "GET") {
          // Linearizable: answered only once a majority confirmed this master after the read
          // arrived (a master paused past the time-outs never answers from its old state).
          const read = yield* Effect.result(server.read)
          if (read._tag === "Failure") {
            const error = read.failure
            if (error._tag === "NotMaster") return yield* redirect(response, error.master, path)
            reply(
              response,
              503,
              { error: "NotReady", reason: error.reason },
              { "retry-after": "1" },
            )
            return
          }
          const value = Option.getOrNull(HashMap.get(read.success, key))
          reply(response, value === null ? 404 : 200, { key, value })
          return
        }
        if (request.method !== "PUT" && request.method !== "DELETE") {
          reply(response, 405, { error: "MethodNotAllowed" })
          return
        }
        if (body === undefined) {
          reply(response, 413, { error: "TooLarge" })
          return
        }
        const clientHeader = request.headers["x-client-id"]
        const requestHeader = request.headers["x-request-id"]
        let clientId: string
        let requestId: number
        if (typeof clientHeader === "string" && typeof requestHeader === "string") {
          requestId = Number(requestHeader)
          if (!Number.isSafeInteger(requestId) || requestId < 1 || clientHeader.length > 128) {
            reply(response, 400, { error: "BadRequest", detail: "x-client-id / x-request-id" })
            return
          }
          clientId = clientHeader
        } else {
          clientId = anonymous
          requestId = ++anonymousRequestId
        }
        const command: Kv.Request =
          request.method === "PUT" ? { _tag: "Put", key, value: body } : { _tag: "Delete", key }
        const outcome = yield* Effect.result(
          server.submit({ clientId, requestId, request: command }),
        )
        if (outcome._tag === "Success") {
          const status = yield* server.status
          reply(response, 200, { key, previous: outcome.success.previous, epoch: status.epoch })
          return
        }
        const error = outcome.failure
        switch (error._tag) {
          case "NotMaster":
            return yield* redirect(response, error.master, path)
          case "Rejected":
            reply(response, 409, { error: "Rejected", reason: error.reason })
            return
          case "GroupUnavailable":
            reply(
              response,
              503,
              { error: "Unavailable", reason: error.reason },
              { "retry-after": "1" },
            )
            return
        }
      }).pipe(
        Effect.catchCause((cause) =>
          Effect.sync(() => {
            if (!response.headersSent)
              reply(response, 500, { error: "Internal", detail: String(cause) })
          }),
        ),
      )

    // The whole request is received before it is answered (a PUT's body up to the limit, any
    // other discarded): an answer sent with bytes still unread would make the socket's close
    // reset the connection under the client.
    httpServer.on("request", (request, response) => {
      void readBody(request).then((body) =>
        Effect.runPromiseExit(handle(request, response, request.method === "PUT" ? body : "")),
      )
    })

    const status = yield* server.status
    line({
      t: "ready",
      id,
      pid: process.pid,
      index: status.index,
      udp: Address.format(server.address),
      http: advertise,
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => line({ t: "stopping", id })))
    return yield* Effect.never
  }).pipe(Effect.scoped, Effect.as(exitCode.ok))
