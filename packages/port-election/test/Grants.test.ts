import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { type Grant, Grants, type Holding } from "../src/Grants.ts"

describe("Grants, step by step", () => {
  it("grants a mutex to the first asker and the rest in the order they asked", () => {
    const grants = new Grants()
    expect(grants.acquire("a", "a1", "lock", 1).grants).toEqual([
      { instanceId: "a", requestId: "a1", resource: "lock" },
    ])
    expect(grants.acquire("c", "c1", "lock", 1).grants).toEqual([])
    expect(grants.acquire("b", "b1", "lock", 1).grants).toEqual([])
    expect(grants.heldCount("lock")).toBe(1)
    expect(grants.snapshot()).toEqual([
      {
        resource: "lock",
        limit: 1,
        holders: [{ instanceId: "a", permits: 1 }],
        waiting: ["c", "b"],
      },
    ])
    // c asked before b, so c is next.
    expect(grants.release("a", "lock")).toEqual([
      { instanceId: "c", requestId: "c1", resource: "lock" },
    ])
    expect(grants.release("c", "lock")).toEqual([
      { instanceId: "b", requestId: "b1", resource: "lock" },
    ])
    expect(grants.release("b", "lock")).toEqual([])
    expect(grants.snapshot()).toEqual([])
  })

  it("a semaphore grants up to its limit, then queues", () => {
    const grants = new Grants()
    expect(grants.acquire("a", "1", "slot", 2).grants).toHaveLength(1)
    expect(grants.acquire("b", "2", "slot", 2).grants).toHaveLength(1)
    expect(grants.acquire("c", "3", "slot", 2).grants).toEqual([])
    expect(grants.heldCount("slot")).toBe(2)
    // Releasing what one does not hold gives nothing away.
    expect(grants.release("c", "slot")).toEqual([])
    expect(grants.heldCount("slot")).toBe(2)
    expect(grants.remove("a")).toEqual([{ instanceId: "c", requestId: "3", resource: "slot" }])
    expect(grants.heldCount("slot")).toBe(2)
  })

  it("refuses a limit other than the resource's (LimitMismatch) and invalid limits", () => {
    const grants = new Grants()
    grants.acquire("a", "1", "r", 2)
    expect(grants.acquire("b", "2", "r", 3)).toEqual({
      refused: { _tag: "LimitMismatch", resource: "r", limit: 2 },
      grants: [],
    })
    expect(grants.acquire("b", "3", "s", 0).refused).toEqual({ _tag: "InvalidLimit", limit: 0 })
    expect(grants.acquire("b", "4", "s", 1.5).refused).toEqual({ _tag: "InvalidLimit", limit: 1.5 })
    expect(grants.acquire("b", "5", "s", -1).refused?._tag).toBe("InvalidLimit")
    // The refused request is not queued: releasing the holder grants nobody.
    expect(grants.release("a", "r")).toEqual([])
    expect(grants.snapshot()).toEqual([])
  })

  it("a cancelled waiter is skipped; remove drops holdings and waits of one instance", () => {
    const grants = new Grants()
    grants.acquire("a", "a1", "m", 1)
    grants.acquire("b", "b1", "m", 1)
    grants.acquire("c", "c1", "m", 1)
    grants.acquire("b", "b2", "n", 1)
    grants.cancel("b", "b1")
    expect(grants.release("a", "m")).toEqual([{ instanceId: "c", requestId: "c1", resource: "m" }])
    grants.acquire("b", "b3", "m", 1)
    expect(grants.remove("c")).toEqual([{ instanceId: "b", requestId: "b3", resource: "m" }])
    expect(grants.remove("b")).toEqual([])
    expect(grants.snapshot()).toEqual([])
  })

  it("withdraw drops one instance's waits and keeps its permits counted", () => {
    const grants = new Grants()
    grants.acquire("a", "a1", "lock", 1)
    grants.acquire("a", "a2", "lock", 1)
    grants.acquire("b", "b1", "lock", 1)
    expect(grants.holds("a")).toBe(true)
    expect(grants.holds("b")).toBe(false)
    grants.withdraw("a")
    // Still a's: b waits until a registers again (replace) or is removed.
    expect(grants.snapshot()).toEqual([
      { resource: "lock", limit: 1, holders: [{ instanceId: "a", permits: 1 }], waiting: ["b"] },
    ])
    expect(grants.replace("a", [{ resource: "lock", limit: 1, permits: 1 }]).grants).toEqual([])
    expect(grants.remove("a")).toEqual([{ instanceId: "b", requestId: "b1", resource: "lock" }])
  })

  it("a resource whose last waiter withdrew or cancelled is forgotten, limit and all", () => {
    const grants = new Grants()
    grants.frozen = true
    expect(grants.acquire("a", "a1", "lock", 1).grants).toEqual([])
    grants.withdraw("a")
    expect(grants.snapshot()).toEqual([])
    // Another limit is no mismatch: nobody uses the old one any more.
    expect(grants.acquire("b", "b1", "lock", 3).refused).toBeUndefined()
    grants.cancel("b", "b1")
    expect(grants.snapshot()).toEqual([])
    expect(grants.acquire("c", "c1", "lock", 2).refused).toBeUndefined()
  })

  it("adopt keeps only what fits and returns the rest as lost", () => {
    const grants = new Grants()
    grants.frozen = true
    expect(grants.adopt("a", [{ resource: "s", limit: 3, permits: 2 }])).toEqual([])
    expect(grants.adopt("b", [{ resource: "s", limit: 3, permits: 2 }])).toEqual([
      { resource: "s", limit: 3, permits: 1 },
    ])
    expect(grants.adopt("c", [{ resource: "s", limit: 3, permits: 1 }])).toEqual([
      { resource: "s", limit: 3, permits: 1 },
    ])
    // A claim with another limit than the resource's is lost entirely.
    expect(grants.adopt("d", [{ resource: "s", limit: 5, permits: 1 }])).toEqual([
      { resource: "s", limit: 5, permits: 1 },
    ])
    expect(grants.heldCount("s")).toBe(3)
    expect(grants.snapshot()[0]!.holders).toEqual([
      { instanceId: "a", permits: 2 },
      { instanceId: "b", permits: 1 },
    ])
  })

  it("replace passes a reconnecting holder's permits over; only what it no longer claims is granted", () => {
    const grants = new Grants()
    grants.acquire("a", "a1", "m", 1)
    grants.acquire("a", "a2", "s", 2)
    grants.acquire("a", "a3", "s", 2)
    grants.acquire("a", "a4", "n", 1)
    grants.acquire("b", "b1", "m", 1)
    grants.acquire("b", "b2", "s", 2)
    grants.acquire("c", "c1", "n", 1)
    grants.acquire("a", "a5", "n", 1)
    // a claims the mutex and one slot of s: b waits on for m and gets the other slot; its
    // own request a5 is dropped (it asks again), and n's permit it no longer claims goes to c.
    const { lost, grants: granted } = grants.replace("a", [
      { resource: "m", limit: 1, permits: 1 },
      { resource: "s", limit: 2, permits: 1 },
    ])
    expect(lost).toEqual([])
    expect(granted).toEqual([
      { instanceId: "b", requestId: "b2", resource: "s" },
      { instanceId: "c", requestId: "c1", resource: "n" },
    ])
    expect(grants.snapshot()).toEqual([
      { resource: "m", limit: 1, holders: [{ instanceId: "a", permits: 1 }], waiting: ["b"] },
      {
        resource: "s",
        limit: 2,
        holders: [
          { instanceId: "a", permits: 1 },
          { instanceId: "b", permits: 1 },
        ],
        waiting: [],
      },
      { resource: "n", limit: 1, holders: [{ instanceId: "c", permits: 1 }], waiting: [] },
    ])
    // A claim beyond what is free is lost, as for any adoption.
    expect(grants.replace("c", [{ resource: "m", limit: 1, permits: 1 }]).lost).toEqual([
      { resource: "m", limit: 1, permits: 1 },
    ])
  })

  it("while frozen nothing is granted; thaw grants what waited, in order", () => {
    const grants = new Grants()
    grants.frozen = true
    expect(grants.acquire("a", "1", "m", 1).grants).toEqual([])
    expect(grants.acquire("b", "2", "m", 1).grants).toEqual([])
    expect(grants.adopt("c", [{ resource: "k", limit: 1, permits: 1 }])).toEqual([])
    expect(grants.release("c", "k")).toEqual([])
    expect(grants.thaw()).toEqual([{ instanceId: "a", requestId: "1", resource: "m" }])
    expect(grants.frozen).toBe(false)
    expect(grants.release("a", "m")).toEqual([{ instanceId: "b", requestId: "2", resource: "m" }])
  })
})

// ---- a property over random sequences ---------------------------------------------------

const instances = ["i0", "i1", "i2", "i3"] as const
const resources = ["r0", "r1", "r2"] as const

type Operation =
  | {
      readonly _tag: "acquire"
      readonly instance: string
      readonly resource: string
      readonly limit: number
    }
  | { readonly _tag: "release"; readonly instance: string; readonly resource: string }
  | { readonly _tag: "cancel"; readonly pick: number }
  | { readonly _tag: "remove"; readonly instance: string }
  | {
      readonly _tag: "adopt" | "replace"
      readonly instance: string
      readonly holdings: ReadonlyArray<Holding>
    }
  | { readonly _tag: "freeze" }
  | { readonly _tag: "thaw" }

const instanceArb = fc.constantFrom(...instances)
const resourceArb = fc.constantFrom(...resources)
// Mostly one limit per resource (so grants happen), sometimes another (LimitMismatch).
const limitArb = fc.oneof({ weight: 4, arbitrary: fc.constant(2) }, fc.constantFrom(1, 3))

const operationArb: fc.Arbitrary<Operation> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      _tag: fc.constant("acquire" as const),
      instance: instanceArb,
      resource: resourceArb,
      limit: limitArb,
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      _tag: fc.constant("release" as const),
      instance: instanceArb,
      resource: resourceArb,
    }),
  },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("cancel" as const), pick: fc.nat(20) }) },
  {
    weight: 1,
    arbitrary: fc.record({ _tag: fc.constant("remove" as const), instance: instanceArb }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constantFrom("adopt" as const, "replace" as const),
      instance: instanceArb,
      holdings: fc.uniqueArray(
        fc.record({
          resource: resourceArb,
          limit: limitArb,
          permits: fc.integer({ min: 1, max: 3 }),
        }),
        { maxLength: 3, selector: (h) => h.resource },
      ),
    }),
  },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("freeze" as const) }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("thaw" as const) }) },
)

/** What the test knows independently of `Grants`: who waits (in order) and who holds. */
interface Model {
  /** Outstanding requests in the order they were made. */
  waiting: Array<{
    readonly instance: string
    readonly requestId: string
    readonly resource: string
  }>
  /** resource → instance → permits. */
  readonly held: Map<string, Map<string, number>>
  frozen: boolean
}

const heldOf = (model: Model, resource: string, instance: string) =>
  model.held.get(resource)?.get(instance) ?? 0

const addHeld = (model: Model, resource: string, instance: string, delta: number) => {
  const byInstance = model.held.get(resource) ?? new Map<string, number>()
  const next = (byInstance.get(instance) ?? 0) + delta
  if (next === 0) byInstance.delete(instance)
  else byInstance.set(instance, next)
  if (byInstance.size === 0) model.held.delete(resource)
  else model.held.set(resource, byInstance)
}

/** Drops everything an instance holds and waits for. */
const forget = (model: Model, instance: string) => {
  model.waiting = model.waiting.filter((w) => w.instance !== instance)
  for (const resource of [...model.held.keys()]) {
    const count = heldOf(model, resource, instance)
    if (count > 0) addHeld(model, resource, instance, -count)
  }
}

/** Each grant must go to the oldest outstanding request of its resource that asked. */
const applyGrants = (model: Model, grants: ReadonlyArray<Grant>) => {
  if (grants.length > 0) expect(model.frozen).toBe(false)
  for (const grant of grants) {
    const oldest = model.waiting.find((w) => w.resource === grant.resource)
    expect(oldest).toEqual({
      instance: grant.instanceId,
      requestId: grant.requestId,
      resource: grant.resource,
    })
    model.waiting = model.waiting.filter((w) => w !== oldest)
    addHeld(model, grant.resource, grant.instanceId, 1)
  }
}

const checkInvariants = (grants: Grants, model: Model) => {
  const snapshot = grants.snapshot()
  for (const entry of snapshot) {
    const total = entry.holders.reduce((sum, h) => sum + h.permits, 0)
    expect(total).toBeLessThanOrEqual(entry.limit)
    expect(grants.heldCount(entry.resource)).toBe(total)
    // Work-conserving: with room left and not frozen, nobody is left waiting.
    if (!grants.frozen && total < entry.limit) expect(entry.waiting).toEqual([])
    expect(entry.waiting).toEqual(
      model.waiting.filter((w) => w.resource === entry.resource).map((w) => w.instance),
    )
    const modelHolders = [...(model.held.get(entry.resource) ?? new Map<string, number>())]
      .map(([instanceId, permits]) => ({ instanceId, permits }))
      .sort((a, b) => a.instanceId.localeCompare(b.instanceId))
    expect([...entry.holders].sort((a, b) => a.instanceId.localeCompare(b.instanceId))).toEqual(
      modelHolders,
    )
  }
  // Nothing the model holds or waits for is missing from the snapshot.
  for (const resource of model.held.keys()) {
    expect(snapshot.some((entry) => entry.resource === resource)).toBe(true)
  }
  for (const waiter of model.waiting) {
    expect(snapshot.some((entry) => entry.resource === waiter.resource)).toBe(true)
  }
}

describe("Grants, random sequences", () => {
  it("never exceeds a limit, grants FIFO, and only to requests that are still outstanding", () => {
    fc.assert(
      fc.property(fc.array(operationArb, { maxLength: 80 }), (operations) => {
        const grants = new Grants()
        const model: Model = { waiting: [], held: new Map(), frozen: false }
        let requestCounter = 0
        for (const operation of operations) {
          switch (operation._tag) {
            case "acquire": {
              const requestId = `q${++requestCounter}`
              const before = grants.snapshot().find((e) => e.resource === operation.resource)
              const result = grants.acquire(
                operation.instance,
                requestId,
                operation.resource,
                operation.limit,
              )
              if (before !== undefined && before.limit !== operation.limit) {
                expect(result.refused).toEqual({
                  _tag: "LimitMismatch",
                  resource: operation.resource,
                  limit: before.limit,
                })
                expect(result.grants).toEqual([])
              } else {
                expect(result.refused).toBeUndefined()
                model.waiting.push({
                  instance: operation.instance,
                  requestId,
                  resource: operation.resource,
                })
                applyGrants(model, result.grants)
              }
              break
            }
            case "release": {
              const had = heldOf(model, operation.resource, operation.instance)
              const result = grants.release(operation.instance, operation.resource)
              if (had > 0) addHeld(model, operation.resource, operation.instance, -1)
              else expect(result).toEqual([])
              applyGrants(model, result)
              break
            }
            case "cancel": {
              const target = model.waiting[operation.pick % Math.max(1, model.waiting.length)]
              if (target === undefined) {
                grants.cancel("nobody", "nothing")
                break
              }
              grants.cancel(target.instance, target.requestId)
              model.waiting = model.waiting.filter((w) => w !== target)
              break
            }
            case "remove": {
              forget(model, operation.instance)
              applyGrants(model, grants.remove(operation.instance))
              break
            }
            case "adopt":
            case "replace": {
              // A replacement first drops what the instance held and waited for (granting
              // nothing), then adopts; a resource keeps its limit meanwhile.
              const replacing = operation._tag === "replace"
              const expectedLost: Array<Holding> = []
              const snapshot = grants.snapshot()
              const keptBy = new Map<string, number>()
              for (const holding of operation.holdings) {
                const entry = snapshot.find((e) => e.resource === holding.resource)
                const limit = entry?.limit ?? holding.limit
                const total =
                  entry?.holders
                    .filter((h) => !replacing || h.instanceId !== operation.instance)
                    .reduce((sum, h) => sum + h.permits, 0) ?? 0
                const kept = limit === holding.limit ? Math.min(limit - total, holding.permits) : 0
                keptBy.set(holding.resource, kept)
                if (kept < holding.permits)
                  expectedLost.push({ ...holding, permits: holding.permits - kept })
              }
              if (replacing) {
                forget(model, operation.instance)
              }
              const result = replacing
                ? grants.replace(operation.instance, operation.holdings)
                : { lost: grants.adopt(operation.instance, operation.holdings), grants: [] }
              expect(result.lost).toEqual(expectedLost)
              for (const [resource, kept] of keptBy) {
                if (kept > 0) addHeld(model, resource, operation.instance, kept)
              }
              applyGrants(model, result.grants)
              break
            }
            case "freeze":
              grants.frozen = true
              model.frozen = true
              break
            case "thaw":
              model.frozen = false
              applyGrants(model, grants.thaw())
              break
          }
          checkInvariants(grants, model)
        }
      }),
      { numRuns: 400 },
    )
  })
})
