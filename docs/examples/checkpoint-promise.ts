/**
 * Checkpoint guide, Promise style: two object servers of one service share a store; a
 * client downloads a 2 MiB object from the first, which closes a third of the way through;
 * the second takes the transfer over and the client gets every byte once, in order.
 * The store is in this process's memory; across machines it is a StoreServer or etcd.
 */
import { createHash, randomBytes } from "node:crypto"
import { type CheckpointServer, createClient, createServer } from "@understudy/checkpoint"
import { MemoryStore } from "@understudy/store"
import { Effect, Exit, Scope } from "effect"

const size = 2 * 1024 * 1024
const object = new Uint8Array(size).map((_, index) => (index * 13 + (index >>> 9)) & 0xff)
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

export const main = async () => {
  const storeScope = Effect.runSync(Scope.make())
  const store = await Effect.runPromise(Scope.provide(MemoryStore.make(), storeScope))
  // One key for the whole service (in production, read from a 0600 file).
  const clusterKey = new Uint8Array(randomBytes(32))
  const start = (serverId: string) =>
    createServer({
      serverId,
      listen: "tcp://127.0.0.1:0",
      // Objects from your own code; `dir` serves a directory's files instead.
      source: {
        size: async (name) => (name === "report.bin" ? size : undefined),
        read: async (_name, offset, length) => object.subarray(offset, offset + length),
      },
      store: { store },
      clusterKey,
      policy: { everyBytes: 256 * 1024 },
      // A dead server's transfers are taken over this long after it stops renewing.
      leaseTtl: "300 millis",
      windowBytesMax: 256 * 1024,
    })
  const servers: Array<CheckpointServer> = [await start("a"), await start("b")]
  const takenOverBy: Array<string> = []
  servers[1]!.on("TakenOver", () => takenOverBy.push("b"))

  const client = createClient({ service: servers.map((server) => server.address), clusterKey })
  const resumedAt: Array<number> = []
  client.on("resumed", (event: { offset: number }) => resumedAt.push(event.offset))
  const chunks: Array<Buffer> = []
  let received = 0
  let closing: Promise<void> | undefined
  for await (const chunk of client.get("report.bin")) {
    chunks.push(chunk as Buffer)
    received += (chunk as Buffer).length
    // The first server goes a third of the way through the transfer.
    if (closing === undefined && received > size / 3) closing = servers[0]!.close()
  }
  await closing
  await servers[1]!.close()
  await Effect.runPromise(Scope.close(storeScope, Exit.void))
  const got = Buffer.concat(chunks)
  return {
    intact: got.length === size && sha256(got) === sha256(object),
    resumed: resumedAt.length,
    takenOverBy,
  }
}

if (import.meta.main) {
  main().then((result) => console.log(result))
}
