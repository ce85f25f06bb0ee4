/**
 * The role machine step by step: the transitions `Cluster` relies on, and the epoch rule —
 * a secondary refuses (and counts) replication older than the newest epoch it knows of.
 */
import { describe, expect, it } from "@effect/vitest"
import { Machine } from "@understudy/machine"
import * as Association from "../src/Association.ts"
import type * as Chunk from "../src/Chunk.ts"
import * as ClusterRole from "../src/ClusterRole.ts"
import { established, Loopback, serverHosts } from "./associationHarness.ts"

const context: Machine.Context = { self: "self", peers: ["link"], nowMs: 0 }

const start = (config: ClusterRole.Config, self: Machine.NodeId = context.self) => {
  const machine = ClusterRole.make(config)
  let state = machine.init({ ...context, self }).state
  const step = (input: Machine.Input<ClusterRole.Message, ClusterRole.Command>) => {
    const result = machine.step(state, input)
    state = result.state
    return result.outputs
  }
  return {
    step,
    command: (command: ClusterRole.Command) => step(Machine.command(command, 0)),
    receive: (message: ClusterRole.Message) => step(Machine.receive("link", message, 0)),
    get state() {
      return state
    },
    init: machine.init(context),
  }
}

const actions = (outputs: ReadonlyArray<ClusterRole.Output>) =>
  outputs.flatMap((output) => (output._tag === "Emit" ? [output.event._tag] : []))

describe("ClusterRole", () => {
  it("a fenced primary acquires the fence first; its epoch is the fence's", () => {
    const node = start({ role: "primary", fenced: true, standby: false })
    expect(actions(node.init.outputs)).toEqual(["AcquireFence"])
    expect(actions(node.command({ _tag: "FenceAcquired", epoch: 3 }))).toEqual(["Fenced"])
    expect(node.state.epoch).toBe(3)
    expect(ClusterRole.serving(node.state)).toBe(true)
  })

  it("the secondary takes over when its link ends, fenced: only after acquiring the next epoch", () => {
    const node = start({ role: "secondary", fenced: true, standby: true })
    node.command({ _tag: "LinkUp" })
    expect(actions(node.receive({ _tag: "Replicate", epoch: 1 }))).toEqual(["Apply"])
    expect(actions(node.command({ _tag: "LinkDown", reason: "Timeout" }))).toEqual(["AcquireFence"])
    expect(node.state.role).toBe("active-secondary")
    // Mid-takeover, packets are dropped (a copy not adopted yet would draw an ABORT), but
    // HEARTBEATs are still answered from the copy (the fence's wait may take seconds).
    expect(ClusterRole.intercept(node.state, { heartbeatsForCopy: false })).toBe("drop")
    expect(ClusterRole.intercept(node.state, { heartbeatsForCopy: true })).toBe("answer")
    expect(actions(node.command({ _tag: "FenceAcquired", epoch: 2 }))).toEqual([
      "Fenced",
      "TakeOver",
    ])
    expect(actions(node.command({ _tag: "TakenOver", associations: 1 }))).toEqual([
      "TookOver",
      "ConnectStandby",
    ])
    expect(ClusterRole.intercept(node.state, { heartbeatsForCopy: false })).toBe("pass")
    // The old primary comes back: told it was deposed, its link closed.
    const answer = node.command({ _tag: "Incoming", from: "old" })
    expect(answer).toContainEqual(Machine.send("old", { _tag: "Deposed", epoch: 2, node: "self" }))
    expect(actions(answer)).toEqual(["RejectLink"])
  })

  it("relink grace: a link end followed by the primary's new link is no failure (a starved standby)", () => {
    // The serving node's keep-alive ended the link to a standby starved of CPU; the standby
    // reads that dead connection late (LinkUp, Replicate, End) with the new one queued.
    for (const fenced of [false, true]) {
      const node = start({ role: "secondary", fenced, standby: true, relinkGraceMs: 300 })
      node.command({ _tag: "LinkUp" })
      node.receive({ _tag: "Replicate", epoch: fenced ? 2 : 0 })
      expect(node.command({ _tag: "LinkDown", reason: "End" })).toEqual([
        Machine.setTimer("relink", 300),
      ])
      expect(node.state.role).toBe("secondary")
      // The peer retransmits what reaches this address meanwhile; no stray takes over.
      expect(ClusterRole.intercept(node.state, { heartbeatsForCopy: false })).toBe("drop")
      expect(ClusterRole.intercept(node.state, { heartbeatsForCopy: true })).toBe("answer")
      expect(node.command({ _tag: "Stray" })).toEqual([])
      expect(actions(node.command({ _tag: "Incoming", from: "link" }))).toEqual(["AcceptLink"])
      expect(node.command({ _tag: "LinkUp" })).toEqual([Machine.cancelTimer("relink")])
      expect(node.step(Machine.timerFired("relink", 300))).toEqual([])
      expect(node.state.role).toBe("secondary")
      expect(ClusterRole.intercept(node.state, { heartbeatsForCopy: false })).toBe("forward")
    }
  })

  it("relink grace: the primary's address found closed (its process gone) ends the grace at once", () => {
    for (const fenced of [false, true]) {
      const node = start({ role: "secondary", fenced, standby: true, relinkGraceMs: 1_000 })
      node.command({ _tag: "LinkUp" })
      node.receive({ _tag: "Replicate", epoch: fenced ? 2 : 0 })
      node.command({ _tag: "LinkDown", reason: "End" })
      const outputs = node.command({ _tag: "PartnerClosed" })
      expect(outputs[0]).toEqual(Machine.cancelTimer("relink"))
      expect(actions(outputs)).toEqual([fenced ? "AcquireFence" : "TakeOver"])
      expect(node.state.role).toBe("active-secondary")
      expect(node.state.awaitingRelink).toBeUndefined()
      // Said again, or once linked again, it changes nothing.
      expect(node.command({ _tag: "PartnerClosed" })).toEqual([])
    }
    const relinked = start({
      role: "secondary",
      fenced: false,
      standby: true,
      relinkGraceMs: 1_000,
    })
    relinked.command({ _tag: "LinkUp" })
    relinked.receive({ _tag: "Replicate", epoch: 0 })
    relinked.command({ _tag: "LinkDown", reason: "Timeout" })
    relinked.command({ _tag: "LinkUp" })
    expect(relinked.command({ _tag: "PartnerClosed" })).toEqual([])
    expect(relinked.state.role).toBe("secondary")
  })

  it("relink grace: every answer of the primary to the probe starts the grace again, so an answering primary is never taken over", () => {
    for (const fenced of [false, true]) {
      const node = start({ role: "secondary", fenced, standby: true, relinkGraceMs: 300 })
      node.command({ _tag: "LinkUp" })
      node.receive({ _tag: "Replicate", epoch: fenced ? 2 : 0 })
      node.command({ _tag: "LinkDown", reason: "Timeout" })
      // Ten answers over 3 s, each within the grace of the one before: the grace never ends.
      for (let answer = 0; answer < 10; answer++) {
        expect(node.command({ _tag: "PartnerAlive" })).toEqual([Machine.setTimer("relink", 300)])
        expect(node.state.role).toBe("secondary")
        expect(node.state.awaitingRelink).toBe("the link closed (Timeout)")
      }
      // It links again: the grace is over; an answer after it changes nothing.
      node.command({ _tag: "LinkUp" })
      expect(node.command({ _tag: "PartnerAlive" })).toEqual([])
      expect(node.state.role).toBe("secondary")
    }
    // Not waiting the grace (never linked, or serving): an answer changes nothing.
    expect(
      start({ role: "secondary", fenced: false, standby: false, relinkGraceMs: 300 }).command({
        _tag: "PartnerAlive",
      }),
    ).toEqual([])
    expect(
      start({ role: "primary", fenced: false, standby: false, relinkGraceMs: 300 }).command({
        _tag: "PartnerAlive",
      }),
    ).toEqual([])
  })

  it("relink grace: the grace ends unlinked, then the secondary takes over", () => {
    const unfenced = start({ role: "secondary", fenced: false, standby: false, relinkGraceMs: 300 })
    unfenced.command({ _tag: "LinkUp" })
    unfenced.receive({ _tag: "Replicate", epoch: 0 })
    unfenced.command({ _tag: "LinkDown", reason: "End" })
    // Some other timer's expiry is not the grace's.
    expect(unfenced.step(Machine.timerFired("other", 100))).toEqual([])
    expect(unfenced.step(Machine.timerFired("relink", 300))).toEqual([
      Machine.emit({
        _tag: "TakeOver",
        why: "the link closed (End), no link and no answer within 300 ms",
        planned: false,
      }),
    ])
    expect(unfenced.state.role).toBe("active-secondary")
    expect(actions(unfenced.command({ _tag: "Incoming", from: "link" }))).toEqual(["RejectLink"])

    const fenced = start({ role: "secondary", fenced: true, standby: true, relinkGraceMs: 300 })
    fenced.command({ _tag: "LinkUp" })
    fenced.receive({ _tag: "Replicate", epoch: 4 })
    fenced.command({ _tag: "LinkDown", reason: "Timeout" })
    expect(actions(fenced.step(Machine.timerFired("relink", 300)))).toEqual(["AcquireFence"])
    expect(actions(fenced.command({ _tag: "FenceAcquired", epoch: 5 }))).toEqual([
      "Fenced",
      "TakeOver",
    ])
    // A secondary that never held a primary's copy waits for nothing.
    const fresh = start({ role: "secondary", fenced: false, standby: false, relinkGraceMs: 300 })
    fresh.command({ _tag: "LinkUp" })
    expect(fresh.command({ _tag: "LinkDown", reason: "End" })).toEqual([])
  })

  it("fenced, waiting for the lease, the secondary takes its primary's new link back; a lease won later is a takeover at that epoch", () => {
    // Refused (Deposed + RejectLink, as before), the live primary served on unprotected
    // and this node later adopted a stale copy (the peer lost the association).
    const node = start({ role: "secondary", fenced: true, standby: true })
    node.command({ _tag: "LinkUp" })
    node.receive({ _tag: "Replicate", epoch: 2 })
    expect(actions(node.command({ _tag: "LinkDown", reason: "End" }))).toEqual(["AcquireFence"])
    expect(actions(node.command({ _tag: "Incoming", from: "link" }))).toEqual(["AcceptLink"])
    expect(node.state.role).toBe("secondary")
    node.command({ _tag: "LinkUp" })
    expect(actions(node.receive({ _tag: "Replicate", epoch: 2 }))).toEqual(["Apply"])
    expect(ClusterRole.intercept(node.state, { heartbeatsForCopy: false })).toBe("forward")
    // The acquisition still under way succeeds: the primary's lease ended, it is fenced out.
    expect(actions(node.command({ _tag: "FenceAcquired", epoch: 3 }))).toEqual([
      "Fenced",
      "TakeOver",
    ])
    expect(node.state.epoch).toBe(3)
    expect(node.state.role).toBe("active-secondary")
    // Its replication, older than the epoch won, changes nothing any more.
    expect(actions(node.receive({ _tag: "Replicate", epoch: 2 }))).toEqual([])
    // Once the lease is held, a returning primary is told it was deposed, as before.
    node.command({ _tag: "LinkDown", reason: "End" })
    const answer = node.command({ _tag: "Incoming", from: "old" })
    expect(answer).toContainEqual(Machine.send("old", { _tag: "Deposed", epoch: 3, node: "self" }))
    expect(actions(answer)).toEqual(["RejectLink"])
  })

  it("unfenced, a takeover under way refuses the old primary's link", () => {
    const node = start({ role: "secondary", fenced: false, standby: false })
    node.command({ _tag: "LinkUp" })
    node.receive({ _tag: "Replicate", epoch: 0 })
    expect(actions(node.command({ _tag: "LinkDown", reason: "End" }))).toEqual(["TakeOver"])
    expect(actions(node.command({ _tag: "Incoming", from: "link" }))).toEqual(["RejectLink"])
    expect(node.state.role).toBe("active-secondary")
  })

  it("a secondary never linked to a primary does not take over", () => {
    const node = start({ role: "secondary", fenced: false, standby: false })
    expect(ClusterRole.intercept(node.state, { heartbeatsForCopy: false })).toBe("drop")
    expect(actions(node.command({ _tag: "Stray" }))).toEqual([])
    expect(node.state.role).toBe("secondary")
  })

  it("unfenced, a stray packet with the link down starts the takeover at once", () => {
    const node = start({ role: "secondary", fenced: false, standby: false })
    node.command({ _tag: "LinkUp" })
    node.receive({ _tag: "Replicate", epoch: 0 })
    expect(ClusterRole.intercept(node.state, { heartbeatsForCopy: false })).toBe("forward")
    expect(ClusterRole.intercept(node.state, { heartbeatsForCopy: true })).toBe("answer")
    node.command({ _tag: "LinkDown", reason: "Closed" })
    // The link's end itself started the takeover.
    expect(node.state.role).toBe("active-secondary")
    const again = start({ role: "secondary", fenced: false, standby: false })
    again.command({ _tag: "LinkUp" })
    again.receive({ _tag: "Replicate", epoch: 0 })
    const unlinked = { ...again.state, linked: false }
    expect(ClusterRole.intercept(unlinked, { heartbeatsForCopy: false })).toBe("take-over")
  })

  it("a secondary refuses and counts replication older than the store's epoch, and deposes its sender", () => {
    const node = start({ role: "secondary", fenced: true, standby: false })
    node.command({ _tag: "LinkUp" })
    node.command({ _tag: "EpochSeen", epoch: 4 })
    const refused = node.receive({ _tag: "Replicate", epoch: 3 })
    expect(actions(refused)).toEqual(["Refused"])
    expect(refused).toContainEqual(Machine.send("link", { _tag: "Deposed", epoch: 4 }))
    expect(node.state.refused).toBe(1)
    expect(actions(node.receive({ _tag: "Replicate", epoch: 4 }))).toEqual(["Apply"])
    expect(actions(node.receive({ _tag: "Replicate", epoch: 5 }))).toEqual(["Apply"])
    // Once epoch 5 was seen, epoch 4 is stale too.
    expect(actions(node.receive({ _tag: "Replicate", epoch: 4 }))).toEqual(["Refused"])
    expect(node.state.refused).toBe(2)
  })

  it("a link whose sender was refused does not make the secondary a takeover candidate", () => {
    const node = start({ role: "secondary", fenced: true, standby: false })
    node.command({ _tag: "LinkUp" })
    node.command({ _tag: "EpochSeen", epoch: 4 })
    node.receive({ _tag: "Replicate", epoch: 3 })
    expect(actions(node.command({ _tag: "LinkDown", reason: "LocalClose" }))).toEqual([])
    expect(node.state.role).toBe("secondary")
  })

  it("a serving node told Deposed, or fenced out, falls silent; a handed-over primary too", () => {
    const deposed = start({ role: "primary", fenced: false, standby: false })
    expect(actions(deposed.receive({ _tag: "Deposed", epoch: 0 }))).toEqual(["FallSilent"])
    expect(deposed.state.role).toBe("deposed")
    const fenced = start({ role: "primary", fenced: true, standby: false })
    fenced.command({ _tag: "FenceAcquired", epoch: 1 })
    expect(actions(fenced.command({ _tag: "FenceLost", reason: "lease" }))).toEqual(["FallSilent"])
    expect(ClusterRole.serving(fenced.state)).toBe(false)
    const handed = start({ role: "primary", fenced: false, standby: false })
    handed.command({ _tag: "HandedOver" })
    expect(handed.state.role).toBe("handed-over")
    // A secondary ignores all three.
    const secondary = start({ role: "secondary", fenced: true, standby: false })
    expect(actions(secondary.receive({ _tag: "Deposed", epoch: 0 }))).toEqual([])
    expect(actions(secondary.command({ _tag: "FenceLost", reason: "x" }))).toEqual([])
    expect(secondary.state.role).toBe("secondary")
  })
})

describe("planned handover", () => {
  it("a linked primary hands over; it falls silent when the new primary says the peer moved", () => {
    const primary = start({ role: "primary", fenced: false, standby: false })
    expect(actions(primary.command({ _tag: "HandOver" }))).toEqual(["HandOverRefused"])
    primary.command({ _tag: "LinkUp" })
    expect(actions(primary.command({ _tag: "HandOver" }))).toEqual(["HandOver"])
    expect(primary.state.role).toBe("handing-over")
    expect(ClusterRole.serving(primary.state)).toBe(false)
    // Asked twice: refused, nothing changes.
    expect(actions(primary.command({ _tag: "HandOver" }))).toEqual(["HandOverRefused"])
    expect(actions(primary.receive({ _tag: "Deposed", epoch: 0 }))).toEqual(["FallSilent"])
    expect(primary.state.role).toBe("handed-over")
  })

  it("a primary whose link ends mid-handover falls silent (the secondary takes over as after a failure)", () => {
    const primary = start({ role: "primary", fenced: false, standby: false })
    primary.command({ _tag: "LinkUp" })
    primary.command({ _tag: "HandOver" })
    expect(actions(primary.command({ _tag: "LinkDown", reason: "Timeout" }))).toEqual([
      "FallSilent",
    ])
    expect(primary.state.role).toBe("handed-over")
  })

  it("the secondary takes over on HandOver with an exact copy; never fenced, stale or unlinked", () => {
    const secondary = start({ role: "secondary", fenced: false, standby: true })
    // Nothing replicated yet: nothing to take over.
    secondary.command({ _tag: "LinkUp" })
    expect(actions(secondary.receive({ _tag: "HandOver", epoch: 0 }))).toEqual([])
    secondary.receive({ _tag: "Replicate", epoch: 0 })
    const outputs = secondary.receive({ _tag: "HandOver", epoch: 0 })
    expect(outputs).toEqual([
      Machine.emit({ _tag: "TakeOver", why: "planned handover", planned: true }),
    ])
    expect(secondary.state.role).toBe("active-secondary")
    const fenced = start({ role: "secondary", fenced: true, standby: false })
    fenced.command({ _tag: "LinkUp" })
    fenced.receive({ _tag: "Replicate", epoch: 2 })
    expect(actions(fenced.receive({ _tag: "HandOver", epoch: 2 }))).toEqual([])
    const fencedPrimary = start({ role: "primary", fenced: true, standby: false })
    fencedPrimary.command({ _tag: "FenceAcquired", epoch: 1 })
    fencedPrimary.command({ _tag: "LinkUp" })
    expect(actions(fencedPrimary.command({ _tag: "HandOver" }))).toEqual(["HandOverRefused"])
  })
})

describe("Deposed carries the sender's epoch", () => {
  /** A fenced secondary that took over at `epoch`. */
  const tookOver = (epoch: number) => {
    const node = start({ role: "secondary", fenced: true, standby: true })
    node.command({ _tag: "LinkUp" })
    node.receive({ _tag: "Replicate", epoch: epoch - 1 })
    node.command({ _tag: "LinkDown", reason: "Timeout" })
    node.command({ _tag: "FenceAcquired", epoch })
    node.command({ _tag: "TakenOver", associations: 1 })
    return node
  }

  it("a node the fence moved past deposes nobody: a serving node with a newer epoch ignores it", () => {
    // The old primary, resumed and not yet told by the store, answers the new one's standby
    // link with Deposed at its old epoch (a tsctp run of 20 SIGSTOPs lost both nodes so).
    const node = tookOver(13)
    // Not obeyed: the sender is told this node's claim instead.
    expect(node.receive({ _tag: "Deposed", epoch: 12 })).toEqual([
      Machine.send("link", { _tag: "Deposed", epoch: 13, node: "self" }),
    ])
    expect(node.state.role).toBe("active-secondary")
    expect(actions(node.receive({ _tag: "Deposed", epoch: 13 }))).toEqual(["FallSilent"])
    expect(node.state.role).toBe("deposed")
  })

  it("a node that took over tells a returning primary its own epoch", () => {
    const node = tookOver(5)
    expect(node.command({ _tag: "Incoming", from: "old" })).toContainEqual(
      Machine.send("old", { _tag: "Deposed", epoch: 5, node: "self" }),
    )
  })
})

describe("two serving nodes: exactly one steps down (epoch, then node id)", () => {
  /** An unfenced secondary `self` that took over from a primary serving `epoch`. */
  const tookOverUnfenced = (self: string, epoch: number) => {
    const node = start({ role: "secondary", fenced: false, standby: true }, self)
    node.command({ _tag: "LinkUp" })
    node.receive({ _tag: "Replicate", epoch })
    node.command({ _tag: "LinkDown", reason: "Timeout" })
    node.command({ _tag: "TakenOver", associations: 1 })
    return node
  }

  it("the order: the newer epoch, then the id that sorts first; a claim with no id wins ties", () => {
    const mine = { epoch: 2, self: "127.0.0.3:9899" }
    expect(ClusterRole.outranks(mine, { epoch: 1, node: "127.0.0.2:9899" })).toBe(true)
    expect(ClusterRole.outranks(mine, { epoch: 3, node: "127.0.0.4:9899" })).toBe(false)
    expect(ClusterRole.outranks(mine, { epoch: 2, node: "127.0.0.2:9899" })).toBe(false)
    expect(ClusterRole.outranks(mine, { epoch: 2, node: "127.0.0.4:9899" })).toBe(true)
    expect(ClusterRole.outranks(mine, { epoch: 2 })).toBe(false)
    // Of two distinct serving nodes exactly one outranks the other, whatever their claims.
    for (const [a, b] of [
      [
        { epoch: 1, self: "x" },
        { epoch: 1, self: "y" },
      ],
      [
        { epoch: 1, self: "y" },
        { epoch: 4, self: "x" },
      ],
      [
        { epoch: 0, self: "b" },
        { epoch: 0, self: "a" },
      ],
    ] as const) {
      const aWins = ClusterRole.outranks(a, { epoch: b.epoch, node: b.self })
      const bWins = ClusterRole.outranks(b, { epoch: a.epoch, node: a.self })
      expect(aWins !== bWins).toBe(true)
    }
  })

  it("unfenced, a takeover serves the epoch after the newest it knew of", () => {
    const node = tookOverUnfenced("b", 0)
    expect(node.state.epoch).toBe(1)
    // The primary it replaced (epoch 0) comes back: it is told epoch 1, and steps down.
    const old = start({ role: "primary", fenced: false, standby: false }, "a")
    const claim = node.command({ _tag: "Incoming", from: "old" })
    expect(claim).toContainEqual(Machine.send("old", { _tag: "Deposed", epoch: 1, node: "b" }))
    expect(actions(old.receive({ _tag: "Deposed", epoch: 1, node: "b" }))).toEqual(["FallSilent"])
    expect(old.state.role).toBe("deposed")
    // A planned handover is a takeover too.
    const planned = start({ role: "secondary", fenced: false, standby: true }, "c")
    planned.command({ _tag: "LinkUp" })
    planned.receive({ _tag: "Replicate", epoch: 3 })
    planned.receive({ _tag: "HandOver", epoch: 3 })
    expect(planned.state.epoch).toBe(4)
  })

  it("equal epochs: the node whose id sorts first serves on and answers; the other steps down", () => {
    // Both took over from a copy of epoch 0 (e.g. each a secondary of a primary that was
    // partitioned from both), both serve epoch 1; a dials b's listener.
    const a = tookOverUnfenced("a", 0)
    const b = tookOverUnfenced("b", 0)
    const bClaim = b.command({ _tag: "Incoming", from: "a" })
    expect(bClaim).toEqual([
      Machine.send("a", { _tag: "Deposed", epoch: 1, node: "b" }),
      Machine.emit({ _tag: "RejectLink" }),
    ])
    // a outranks b: it serves on and tells b on the same connection.
    const aAnswer = a.receive({ _tag: "Deposed", epoch: 1, node: "b" })
    expect(aAnswer).toEqual([Machine.send("link", { _tag: "Deposed", epoch: 1, node: "a" })])
    expect(a.state.role).toBe("active-secondary")
    expect(actions(b.receive({ _tag: "Deposed", epoch: 1, node: "a" }))).toEqual(["FallSilent"])
    expect(b.state.role).toBe("deposed")
    // b, silent for good, claims nothing: no exchange goes on.
    expect(b.receive({ _tag: "Deposed", epoch: 1, node: "a" })).toEqual([])
    expect(actions(b.command({ _tag: "Incoming", from: "a" }))).toEqual(["RejectLink"])
  })

  it("the same pair the other way round: b dials a, and still b steps down", () => {
    const a = tookOverUnfenced("a", 0)
    const b = tookOverUnfenced("b", 0)
    const aClaim = a.command({ _tag: "Incoming", from: "b" })
    expect(aClaim).toContainEqual(Machine.send("b", { _tag: "Deposed", epoch: 1, node: "a" }))
    expect(actions(b.receive({ _tag: "Deposed", epoch: 1, node: "a" }))).toEqual(["FallSilent"])
    expect(ClusterRole.serving(a.state)).toBe(true)
    expect(ClusterRole.serving(b.state)).toBe(false)
  })

  it("a newer epoch wins over a smaller id: the node that took over deposes a primary back from a pause", () => {
    // a (sorts first) served epoch 0 and was paused; b took over at epoch 1.
    const a = start({ role: "primary", fenced: false, standby: false }, "a")
    const b = tookOverUnfenced("b", 0)
    const claim = b.command({ _tag: "Incoming", from: "a" })
    expect(claim).toContainEqual(Machine.send("a", { _tag: "Deposed", epoch: 1, node: "b" }))
    expect(actions(a.receive({ _tag: "Deposed", epoch: 1, node: "b" }))).toEqual(["FallSilent"])
    expect(ClusterRole.serving(b.state)).toBe(true)
  })
})

describe("what a secondary answers from its copy (Cluster.ts and the simulations run these)", () => {
  const config = (localPort: number, localAddresses: ReadonlyArray<string> = []) => ({
    ...Association.defaultConfig,
    localPort,
    localAddresses,
  })
  const lb = new Loopback({ seed: 7 }, config(4000), config(5000, serverHosts))
  const heartbeat = (byte: number): Chunk.Chunk => ({
    _tag: "Heartbeat",
    info: Uint8Array.of(byte, byte + 1),
  })

  it("only HEARTBEATs, for an association it holds a copy of", () => {
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    const copy = lb.server!
    expect(ClusterRole.heartbeatsForCopy(copy, [heartbeat(1), heartbeat(3)])).toBe(true)
    expect(ClusterRole.heartbeatsForCopy(undefined, [heartbeat(1)])).toBe(false)
    expect(ClusterRole.heartbeatsForCopy(copy, [])).toBe(false)
    expect(
      ClusterRole.heartbeatsForCopy(copy, [heartbeat(1), { _tag: "CookieAck" } as Chunk.Chunk]),
    ).toBe(false)
  })

  it("one HEARTBEAT ACK per HEARTBEAT, its information echoed, with the peer's tag and ports", () => {
    expect(lb.run(() => established(lb), 60_000)).toBe(true)
    const copy = lb.server!
    const answers = ClusterRole.heartbeatAnswers(copy, 5000, [heartbeat(1), heartbeat(3)])
    expect(answers).toEqual(
      [1, 3].map((byte) => ({
        sourcePort: 5000,
        destinationPort: 4000,
        verificationTag: Association.peerTag(copy),
        chunks: [{ _tag: "HeartbeatAck", info: Uint8Array.of(byte, byte + 1) }],
      })),
    )
    expect(Association.peerTag(copy)).toBe(Association.myTag(lb.client))
  })
})
