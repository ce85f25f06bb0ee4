/**
 * Association-level set-up shared by the tests that step one association by hand: a
 * `Loopback` pair established, and packets from its peer (the harness's server side, at
 * `serverHosts[0]`) stepped into an association as they would arrive.
 */
import { expect } from "vitest"
import * as Association from "../../src/Association.ts"
import type * as Chunk from "../../src/Chunk.ts"
import {
  established,
  Loopback,
  type NetOptions,
  serverHosts,
  serverUdp,
} from "../associationHarness.ts"

export const associationConfig = (localPort: number): Association.Config => ({
  ...Association.defaultConfig,
  localPort,
})

/** A client (port 4000) and server (port 5000) association, established. */
export const establishedPair = (seed: number, net?: Omit<NetOptions, "seed">): Loopback => {
  const lb = new Loopback({ ...net, seed }, associationConfig(4000), associationConfig(5000))
  expect(lb.run(() => established(lb), 60_000)).toBe(true)
  return lb
}

/** One packet of `chunks` from the peer at `serverHosts[0]`, stepped into `state`. */
export const fromPeer = (
  state: Association.State,
  chunks: ReadonlyArray<Chunk.Chunk>,
  nowMs: number,
): ReadonlyArray<Association.Output> =>
  Association.step(state, {
    _tag: "Receive",
    from: { host: serverHosts[0], udpPort: serverUdp },
    message: {
      sourcePort: Association.peerPort(state),
      destinationPort: 4000,
      verificationTag: Association.myTag(state),
      chunks: [...chunks],
    },
    nowMs,
  }).outputs

/** A DATA chunk of one whole message on stream 0. */
export const dataChunk = (
  tsn: number,
  userData: Uint8Array,
  options?: { readonly unordered?: boolean },
): Chunk.Data => ({
  _tag: "Data",
  immediate: false,
  unordered: options?.unordered ?? false,
  beginning: true,
  ending: true,
  tsn: tsn >>> 0,
  streamIdentifier: 0,
  streamSequenceNumber: 0,
  payloadProtocolIdentifier: 7,
  userData,
})
