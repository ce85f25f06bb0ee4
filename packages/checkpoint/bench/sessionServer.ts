/**
 * One object server of the session backend as its own process, for the benchmark's SIGKILL
 * takeovers (`bench/main.ts` starts two and kills the serving one):
 *   node bench/sessionServer.ts ID STORE_ADDRESS KEY_HEX LEASE_MS OBJECT_BYTES
 * Serves the benchmark's object as `small`, and two-way sessions of the `echo` application,
 * from the shared store at STORE_ADDRESS; prints
 * `{"t":"ready","address":...}` once listening and `{"t":"takenover","atMs":...}` (wall
 * clock, sub-millisecond) each time it adopts a bundle another server held.
 */

import { RemoteStore } from "@understudy/store"
import { Address, NodeTransport } from "@understudy/transport"
import { Effect, Layer, Redacted, Stream } from "effect"
import * as CheckpointStore from "../src/CheckpointStore.ts"
import * as ObjectSession from "../src/ObjectSession.ts"
import { echo } from "./echo.ts"

const [id, storeAddress, keyHex, leaseMs, objectBytes] = process.argv.slice(2)
const size = Number(objectBytes)
const object = new Uint8Array(size).map((_, i) => (i * 31 + (i >>> 11)) & 0xff)
const clusterKey = Redacted.make(Uint8Array.from(Buffer.from(keyHex!, "hex")))
const store = Address.parseStream(storeAddress!)
if (store instanceof Address.InvalidAddress) throw new Error(store.reason)
const line = (value: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(value)}\n`)
const wallMs = () => performance.timeOrigin + performance.now()

await Effect.runPromise(
  Effect.scoped(
    Effect.gen(function* () {
      const server = yield* ObjectSession.serve(
        {
          listen: Address.tcp("127.0.0.1", 0),
          clusterKey,
          policy: {},
          windowBytesMax: 1024 * 1024,
          duplex: echo,
        },
        {
          size: (name) => Effect.succeed(name === "small" ? size : undefined),
          read: (_name, offset, length) => Effect.succeed(object.subarray(offset, offset + length)),
        },
      ).pipe(
        Effect.provideServiceEffect(
          CheckpointStore.CheckpointStore,
          CheckpointStore.make({
            serverId: id!,
            backend: "session",
            prefix: CheckpointStore.defaultPrefix("bench-sigkill"),
            leaseTtl: Number(leaseMs),
          }),
        ),
        Effect.provide(
          yield* Layer.build(
            RemoteStore.layer({ address: store, clusterKey }).pipe(
              Layer.provide(NodeTransport.layer),
            ),
          ),
        ),
      )
      line({ t: "ready", address: Address.format(server.address) })
      yield* Stream.runForEach(server.events, (event) =>
        Effect.sync(() => {
          if (event._tag === "TakenOver") line({ t: "takenover", atMs: wallMs() })
        }),
      )
    }).pipe(Effect.provide(NodeTransport.layer)),
  ),
)
