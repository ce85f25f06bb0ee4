/**
 * Contributors: the layers of a connection's stack (the session layer, the kernel's TCP with
 * the `tcp-repair` backend, the application protocol, a user's own layer) each append
 * their state to the checkpoint block passed through them, and on the
 * takeover server recreate themselves from it "unready", then become ready once
 * every layer has restored and the client's acknowledgement has been compared with the
 * checkpoint.
 *
 * A `Bundle` groups the contributors of related connections (a control connection and its
 * data connections over TCP, UDP or multicast) under one checkpoint.
 *
 * @since 0.1.0
 */
import { Effect, type Scope } from "effect"
import type { Checkpoint, ConnectionState, Draft } from "./Checkpoint.ts"
import type { CheckpointContributorFailed, TakeoverRefused } from "./CheckpointError.ts"

/**
 * One layer's part in checkpoints. `append` must not block on the network: it runs while
 * the bundle's sending is held at a consistent point.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Contributor } from "@understudy/checkpoint"
 *
 * let paused = false
 * const pauseLayer: Contributor.Contributor = {
 *   layer: "pause",
 *   append: (draft) => Effect.succeed(Contributor.putLayer(draft, "pause", Uint8Array.of(paused ? 1 : 0))),
 *   restore: (checkpoint) => Effect.sync(() => { paused = checkpoint.layers.pause?.[0] === 1 }),
 *   ready: Effect.void,
 * }
 * ```
 * @since 0.1.0
 * @category models
 */
export interface Contributor {
  /** Unique within a bundle: the key of its blocks. */
  readonly layer: string
  /** Adds this layer's state to the block and passes it on. */
  readonly append: (draft: Draft) => Effect.Effect<Draft, CheckpointContributorFailed>
  /**
   * Recreates this layer from the checkpoint without sending anything ("unready"). A layer
   * that finds the checkpoint cannot be honoured refuses the takeover.
   */
  readonly restore: (
    checkpoint: Checkpoint,
  ) => Effect.Effect<void, CheckpointContributorFailed | TakeoverRefused>
  /** Every layer restored and the comparison succeeded: start (or resume) sending. */
  readonly ready: Effect.Effect<void, CheckpointContributorFailed>
}

/**
 * The contributors of one bundle, in registration order: the lower layers first, so a
 * layer above reads positions a layer below has already appended.
 *
 * @since 0.1.0
 * @category models
 */
export interface Bundle {
  readonly id: string
  /** The application layer protocol, recorded in every checkpoint. */
  readonly protocol: string
  readonly contributors: () => ReadonlyArray<Contributor>
  /** Adds a contributor until the scope closes. Fails on a duplicate layer name (a defect). */
  readonly register: (contributor: Contributor) => Effect.Effect<void, never, Scope.Scope>
}

/**
 * A new, empty bundle.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeBundle = (id: string, protocol: string): Bundle => {
  const contributors: Array<Contributor> = []
  return {
    id,
    protocol,
    contributors: () => contributors.slice(),
    register: (contributor) =>
      Effect.acquireRelease(
        Effect.suspend(() =>
          contributors.some((c) => c.layer === contributor.layer)
            ? Effect.die(new Error(`layer ${contributor.layer} registered twice in bundle ${id}`))
            : Effect.sync(() => {
                contributors.push(contributor)
              }),
        ),
        () =>
          Effect.sync(() => {
            const index = contributors.indexOf(contributor)
            if (index >= 0) contributors.splice(index, 1)
          }),
      ),
  }
}

/**
 * Passes an empty block through every contributor in order.
 *
 * @since 0.1.0
 * @category operations
 */
export const appendAll = (bundle: Bundle): Effect.Effect<Draft, CheckpointContributorFailed> =>
  Effect.reduce(
    bundle.contributors(),
    () => emptyDraft,
    (draft, contributor) => contributor.append(draft),
  )

/**
 * Recreates every layer unready, in order, then signals ready to every layer, in order.
 * Nothing is ready unless every layer restored.
 *
 * @since 0.1.0
 * @category operations
 */
export const restoreAll = (
  bundle: Bundle,
  checkpoint: Checkpoint,
): Effect.Effect<void, CheckpointContributorFailed | TakeoverRefused> =>
  Effect.gen(function* () {
    const contributors = bundle.contributors()
    for (const contributor of contributors) yield* contributor.restore(checkpoint)
    for (const contributor of contributors) yield* contributor.ready
  })

/** @since 0.1.0 @category constructors */
export const emptyDraft: Draft = { connections: [], layers: {} }

/**
 * Sets (adds or replaces, by name) one connection's state in a block.
 *
 * @since 0.1.0
 * @category drafts
 */
export const putConnection = (draft: Draft, connection: ConnectionState): Draft => {
  const index = draft.connections.findIndex((c) => c.name === connection.name)
  const connections = draft.connections.slice()
  if (index >= 0) connections[index] = connection
  else connections.push(connection)
  return { ...draft, connections }
}

/**
 * Adds one layer's block to a connection already in the draft (a defect when it is not:
 * the layer that creates a connection's state comes first).
 *
 * @since 0.1.0
 * @category drafts
 */
export const putConnectionLayer = (
  draft: Draft,
  connectionName: string,
  layer: string,
  block: Uint8Array,
): Draft => {
  const connection = draft.connections.find((c) => c.name === connectionName)
  if (connection === undefined) throw new Error(`no connection ${connectionName} in the draft`)
  return putConnection(draft, { ...connection, layers: { ...connection.layers, [layer]: block } })
}

/**
 * Adds a bundle-wide block (the application protocol's state).
 *
 * @since 0.1.0
 * @category drafts
 */
export const putLayer = (draft: Draft, layer: string, block: Uint8Array): Draft => ({
  ...draft,
  layers: { ...draft.layers, [layer]: block },
})
