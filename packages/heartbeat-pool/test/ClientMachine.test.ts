/**
 * The client machine step by step: replies are matched to the message they answer.
 */
import { describe, expect, it } from "@effect/vitest"
import { Machine as M } from "@understudy/machine"
import * as Client from "../src/ClientMachine.ts"
import type * as Message from "../src/Message.ts"
import { fakeCrypto } from "./support/sim.ts"

const servers = ["s1", "s2", "s3"]
const client = Client.make({ servers, product: "cad", seats: 1, heartbeatIntervalMs: 100 })
type Out = ReadonlyArray<M.Output<Message.ServerReply | Message.ClientRequest, Client.Event>>

const sent = (outputs: Out) =>
  outputs.flatMap((output) =>
    output._tag === "Send" ? [{ to: output.to, message: output.message }] : [],
  )
const events = (outputs: Out) => M.events(outputs).map((event) => event._tag)

const claims = {
  client: "c1",
  server: "s1",
  term: 1,
  product: "cad",
  seats: 1,
  validUntilMs: 10_000,
}
const granted = (seq: number, nowMs: number): Message.ServerReply => ({
  _tag: "Granted",
  server: "s1",
  term: 1,
  seq,
  token: { ...claims, signature: fakeCrypto.signToken(claims) },
  expiresAtMs: nowMs + 2_000,
  leaders: servers,
  reattached: false,
})
const denied = (seq: number, reason: Message.DenyReason): Message.ServerReply => ({
  _tag: "Denied",
  server: "s1",
  term: 1,
  seq,
  reason,
})

/** c1 asked s1 twice (its first request unanswered), seq 1 and 2. */
const askedTwice = () => {
  const init = client.init({ self: "c1", peers: servers, nowMs: 0 })
  const again = client.step(init.state, M.timerFired(Client.beatTimer, 100))
  expect([...sent(init.outputs), ...sent(again.outputs)].map((send) => send.message)).toMatchObject(
    [
      { _tag: "Request", seq: 1 },
      { _tag: "Request", seq: 2 },
    ],
  )
  return again.state
}

describe("client machine", () => {
  it("a Denied that answers an older request than the Granted it arrives after is stale: the seat is kept", () => {
    const holding = client.step(askedTwice(), M.receive("s1", granted(2, 110), 110))
    expect(events(holding.outputs)).toEqual(["Granted"])
    // The refusal of request 1 overtook nothing: it comes late, after the grant of request 2.
    const late = client.step(holding.state, M.receive("s1", denied(1, "queue-full"), 115))
    expect(events(late.outputs)).toEqual([])
    expect(late.state.phase).toBe("holding")
    expect(Client.holds(late.state, 115)).toBe(true)
  })

  it("a Granted that answers an older request than a reply already acted on grants nothing", () => {
    const refused = client.step(askedTwice(), M.receive("s1", denied(2, "capacity"), 110))
    expect(events(refused.outputs)).toEqual(["Denied"])
    const late = client.step(refused.state, M.receive("s1", granted(1, 115), 115))
    expect(events(late.outputs)).toEqual([])
    expect(Client.holds(late.state, 115)).toBe(false)
  })

  it("a Denied that answers the current heartbeat still ends the seat", () => {
    const holding = client.step(askedTwice(), M.receive("s1", granted(2, 110), 110)).state
    const beat = client.step(holding, M.timerFired(Client.beatTimer, 200))
    expect(sent(beat.outputs)).toMatchObject([{ to: "s1", message: { _tag: "Beat", seq: 3 } }])
    const refused = client.step(beat.state, M.receive("s1", denied(3, "bad-token"), 205))
    expect(M.events(refused.outputs)).toEqual([
      { _tag: "Denied", server: "s1", term: 1, reason: "bad-token", atMs: 205 },
      { _tag: "Lost", server: "s1", term: 1, reason: "refused", atMs: 205 },
    ])
    expect(Client.holds(refused.state, 205)).toBe(false)
  })
})
