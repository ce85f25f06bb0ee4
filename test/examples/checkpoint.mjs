// @understudy/checkpoint: a connection checkpoint through its encoding, and a damaged one refused.
import { Checkpoint } from "@understudy/checkpoint"
import { Result } from "effect"

const checkpoint = {
  version: 1,
  backend: "session",
  bundleId: "movie-1",
  serverId: "a",
  takenAtMs: 1_700_000_000_000,
  generation: 1,
  protocol: "takeover-stream/1",
  resumeCounter: 0,
  connections: [
    {
      name: "data",
      role: "data",
      transport: "tcp",
      source: { host: "127.0.0.1", port: 9000 },
      destination: { host: "127.0.0.1", port: 50000 },
      initialSeqSource: 1_000,
      initialSeqDestination: 7_000,
      currentSeqSource: 1_500,
      currentSeqDestination: 7_010,
      ackedSeqSource: 1_200,
      sendHorizonSeq: 2_000,
      coverage: "source",
      object: { id: "movie", firstByteSeq: 1_001, size: 5_000 },
      layers: {},
    },
  ],
  layers: {},
}
const bytes = Result.getOrThrow(Checkpoint.encode(checkpoint))
const decoded = Result.getOrThrow(Checkpoint.decode(bytes))
const damaged = Checkpoint.decode(bytes.subarray(0, bytes.length - 1))
console.log(
  JSON.stringify({
    acked: decoded.connections[0].ackedSeqSource,
    damaged: Result.isFailure(damaged) ? damaged.failure._tag : "accepted",
  }),
)
