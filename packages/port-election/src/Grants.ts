/**
 * Machine-wide mutexes and counting semaphores, as the supervisor keeps them: a pure
 * record of who holds how many permits of which named resource, and who waits, in order.
 * No I/O: the supervisor feeds it acquisitions, releases and departures, and sends the
 * grants it returns. A mutex is a semaphore with a limit of 1.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 @category models */
export interface Grant {
  readonly instanceId: string
  readonly requestId: string
  readonly resource: string
}

/**
 * The instance's own permit commands, the same to either side's machine (the supervisor's
 * grants them, the subordinate's asks its supervisor): an acquisition, its withdrawal, and
 * a release.
 *
 * @since 0.1.0
 * @category models
 */
export type OwnCommand =
  | {
      readonly _tag: "Acquire"
      readonly requestId: string
      readonly resource: string
      readonly limit: number
    }
  | { readonly _tag: "Cancel"; readonly requestId: string }
  | { readonly _tag: "Release"; readonly resource: string }

/** A permit an instance says it holds when it re-registers after a failover. @since 0.1.0 */
export interface Holding {
  readonly resource: string
  readonly limit: number
  readonly permits: number
}

interface Waiter {
  readonly instanceId: string
  readonly requestId: string
}

interface Resource {
  readonly limit: number
  readonly holders: Map<string, number>
  readonly waiters: Array<Waiter>
}

/** Why an acquisition was refused. @since 0.1.0 @category models */
export type Refusal =
  | { readonly _tag: "LimitMismatch"; readonly resource: string; readonly limit: number }
  | { readonly _tag: "InvalidLimit"; readonly limit: number }
  | { readonly _tag: "TooManyWaiters"; readonly resource: string }

/** Waiters per resource: a limit on memory a misbehaving client can take. */
export const waitersMax = 10_000

/** @since 0.1.0 @category models */
export class Grants {
  private readonly resources = new Map<string, Resource>()
  /** While frozen nothing new is granted: a new supervisor waits for holders to re-register. */
  frozen = false

  /**
   * An independent copy: the supervisor's machine steps a copy, so the state it was given
   * stays as it was (the `@understudy/machine` contract).
   */
  clone(): Grants {
    const copy = new Grants()
    copy.frozen = this.frozen
    for (const [name, resource] of this.resources) {
      copy.resources.set(name, {
        limit: resource.limit,
        holders: new Map(resource.holders),
        waiters: [...resource.waiters],
      })
    }
    return copy
  }

  private held(resource: Resource): number {
    let total = 0
    for (const permits of resource.holders.values()) total += permits
    return total
  }

  /**
   * Asks for one permit. Granted at once when the resource has room and nobody waits
   * before; queued otherwise. The first acquirer of a resource sets its limit.
   */
  acquire(
    instanceId: string,
    requestId: string,
    name: string,
    limit: number,
  ): { readonly refused?: Refusal; readonly grants: ReadonlyArray<Grant> } {
    if (!Number.isInteger(limit) || limit < 1) {
      return { refused: { _tag: "InvalidLimit", limit }, grants: [] }
    }
    const resource: Resource = this.resources.get(name) ?? {
      limit,
      holders: new Map(),
      waiters: [],
    }
    if (resource.limit !== limit) {
      return {
        refused: { _tag: "LimitMismatch", resource: name, limit: resource.limit },
        grants: [],
      }
    }
    if (resource.waiters.length >= waitersMax) {
      return { refused: { _tag: "TooManyWaiters", resource: name }, grants: [] }
    }
    this.resources.set(name, resource)
    resource.waiters.push({ instanceId, requestId })
    return { grants: this.grantWaiting(name, resource) }
  }

  /** Returns one permit of `name` held by `instanceId`, if it holds one. */
  release(instanceId: string, name: string): ReadonlyArray<Grant> {
    const resource = this.resources.get(name)
    const permits = resource?.holders.get(instanceId)
    if (resource === undefined || permits === undefined) return []
    if (permits > 1) resource.holders.set(instanceId, permits - 1)
    else resource.holders.delete(instanceId)
    return this.grantWaiting(name, resource)
  }

  /** Withdraws a waiting request (the requester gave up). */
  cancel(instanceId: string, requestId: string): void {
    for (const [name, resource] of this.resources) {
      const index = resource.waiters.findIndex(
        (w) => w.instanceId === instanceId && w.requestId === requestId,
      )
      if (index >= 0) resource.waiters.splice(index, 1)
      this.dropIfUnused(name, resource)
    }
  }

  /** Whether `instanceId` holds any permit. */
  holds(instanceId: string): boolean {
    for (const resource of this.resources.values()) {
      if (resource.holders.has(instanceId)) return true
    }
    return false
  }

  /**
   * Withdraws everything an instance waits for, keeping what it holds: its connection is
   * gone, and it asks again if it registers again. Grants nothing (a waiter leaving the
   * queue makes no room).
   */
  withdraw(instanceId: string): void {
    this.dropWaits(instanceId)
    for (const [name, resource] of this.resources) this.dropIfUnused(name, resource)
  }

  private dropWaits(instanceId: string): void {
    for (const resource of this.resources.values()) {
      for (let i = resource.waiters.length - 1; i >= 0; i--) {
        if (resource.waiters[i]!.instanceId === instanceId) resource.waiters.splice(i, 1)
      }
    }
  }

  /**
   * Forgets a resource nobody holds or waits for, and with it its limit: a later request
   * may give another (a limit that outlived its last user would refuse it as a mismatch).
   */
  private dropIfUnused(name: string, resource: Resource): void {
    if (resource.waiters.length === 0 && resource.holders.size === 0) this.resources.delete(name)
  }

  /** An instance left (its connection closed): everything it held or waited for goes. */
  remove(instanceId: string): ReadonlyArray<Grant> {
    this.forget(instanceId)
    return this.grantAll()
  }

  /**
   * Takes over permits an instance held under the previous supervisor. A permit is kept
   * only while the resource has room for it, so a count is never exceeded even if an
   * instance comes back after the grace period with a stale claim; the rest are returned
   * as lost.
   */
  adopt(instanceId: string, holdings: ReadonlyArray<Holding>): ReadonlyArray<Holding> {
    const lost: Array<Holding> = []
    for (const holding of holdings) {
      if (!Number.isInteger(holding.limit) || holding.limit < 1 || holding.permits < 1) {
        // Nonsense can not be adopted, and must not fix a resource to a bad limit.
        lost.push(holding)
        continue
      }
      const resource: Resource = this.resources.get(holding.resource) ?? {
        limit: holding.limit,
        holders: new Map(),
        waiters: [],
      }
      if (resource.limit !== holding.limit) {
        lost.push(holding)
        continue
      }
      this.resources.set(holding.resource, resource)
      const room = resource.limit - this.held(resource)
      const kept = Math.max(0, Math.min(room, holding.permits))
      if (kept > 0) {
        resource.holders.set(instanceId, (resource.holders.get(instanceId) ?? 0) + kept)
      }
      if (kept < holding.permits) lost.push({ ...holding, permits: holding.permits - kept })
    }
    return lost
  }

  /**
   * An instance registers again over a new connection (its old one died on its side
   * only): what it says it holds now replaces what it held and waited for, and nothing it
   * held is granted to another in between. It asks again for what it still waits for.
   */
  replace(
    instanceId: string,
    holdings: ReadonlyArray<Holding>,
  ): { readonly lost: ReadonlyArray<Holding>; readonly grants: ReadonlyArray<Grant> } {
    this.forget(instanceId)
    const lost = this.adopt(instanceId, holdings)
    // A permit it no longer claims (a grant it never received) goes to the next waiter.
    return { lost, grants: this.grantAll() }
  }

  /** Ends a freeze and grants whatever waited meanwhile. */
  thaw(): ReadonlyArray<Grant> {
    this.frozen = false
    return this.grantAll()
  }

  /**
   * Drops what an instance holds and waits for, granting nothing yet. Its resources keep
   * their limits until the caller's grantAll: a replacement re-claims against the old limit.
   */
  private forget(instanceId: string): void {
    this.dropWaits(instanceId)
    for (const resource of this.resources.values()) resource.holders.delete(instanceId)
  }

  private grantAll(): Array<Grant> {
    const grants: Array<Grant> = []
    for (const [name, resource] of this.resources) grants.push(...this.grantWaiting(name, resource))
    return grants
  }

  private grantWaiting(name: string, resource: Resource): Array<Grant> {
    const grants: Array<Grant> = []
    while (!this.frozen && resource.waiters.length > 0 && this.held(resource) < resource.limit) {
      const waiter = resource.waiters.shift()!
      resource.holders.set(waiter.instanceId, (resource.holders.get(waiter.instanceId) ?? 0) + 1)
      grants.push({ instanceId: waiter.instanceId, requestId: waiter.requestId, resource: name })
    }
    this.dropIfUnused(name, resource)
    return grants
  }

  /** Permits held, per resource and instance, and the waiting queue: for status displays. */
  snapshot(): ReadonlyArray<{
    readonly resource: string
    readonly limit: number
    readonly holders: ReadonlyArray<{ readonly instanceId: string; readonly permits: number }>
    readonly waiting: ReadonlyArray<string>
  }> {
    return [...this.resources].map(([resource, r]) => ({
      resource,
      limit: r.limit,
      holders: [...r.holders].map(([instanceId, permits]) => ({ instanceId, permits })),
      waiting: r.waiters.map((w) => w.instanceId),
    }))
  }

  /** Permits held and requests waiting, per resource: for the supervisor's gauges. */
  counts(): Map<string, { readonly held: number; readonly waiting: number }> {
    const counts = new Map<string, { readonly held: number; readonly waiting: number }>()
    for (const [name, resource] of this.resources) {
      counts.set(name, { held: this.held(resource), waiting: resource.waiters.length })
    }
    return counts
  }

  /** Permits held of `name` in total. */
  heldCount(name: string): number {
    const resource = this.resources.get(name)
    return resource === undefined ? 0 : this.held(resource)
  }
}
