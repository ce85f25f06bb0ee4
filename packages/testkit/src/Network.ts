/**
 * What a simulation knows of its network at any moment, built from the faults applied so
 * far: which nodes are up and since when, and for each direction of each link whether it
 * is cut, how it is configured and since when it has been so. Invariants use it to state
 * their premises ("while the link from p has been healthy for the last `timeoutMs`").
 *
 * @since 0.1.0
 */
import type { Machine } from "@understudy/machine"
import type { SimNet } from "@understudy/transport"
import type * as FaultSchedule from "./FaultSchedule.ts"

/** @since 0.1.0 @category models */
export interface NodeState {
  readonly up: boolean
  /** When it last came up (start or restart) or went down. */
  readonly sinceMs: number
}

/** One direction of a link. @since 0.1.0 @category models */
export interface LinkState {
  readonly cut: boolean
  readonly config: SimNet.LinkConfig
  /** When `cut` or `config` last changed (0 for never). */
  readonly sinceMs: number
}

/** @since 0.1.0 @category models */
export interface Network {
  readonly nodes: ReadonlyArray<Machine.NodeId>
  readonly node: (node: Machine.NodeId) => NodeState
  readonly link: (from: Machine.NodeId, to: Machine.NodeId) => LinkState
}

/** A `Network` that follows the faults it is told about. @since 0.1.0 @category models */
export interface Tracker extends Network {
  readonly apply: (scheduled: FaultSchedule.Scheduled) => void
}

const key = (from: string, to: string) => `${from}\u0000${to}`

const sameLink = (a: SimNet.LinkConfig, b: SimNet.LinkConfig): boolean =>
  JSON.stringify(a) === JSON.stringify(b)

/**
 * Starts with every node up at `startMs` and every link healthy with `link`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  nodes: ReadonlyArray<Machine.NodeId>,
  link: SimNet.LinkConfig,
  startMs = 0,
): Tracker => {
  const nodeStates = new Map<Machine.NodeId, NodeState>()
  for (const node of nodes) nodeStates.set(node, { up: true, sinceMs: startMs })
  const links = new Map<string, LinkState>()
  const initial: LinkState = { cut: false, config: link, sinceMs: startMs }
  const getLink = (from: string, to: string) => links.get(key(from, to)) ?? initial
  const setLink = (from: string, to: string, next: Omit<LinkState, "sinceMs">, atMs: number) => {
    const current = getLink(from, to)
    if (current.cut === next.cut && sameLink(current.config, next.config)) return
    links.set(key(from, to), { ...next, sinceMs: atMs })
  }
  const apply = ({ atMs, fault }: FaultSchedule.Scheduled): void => {
    switch (fault._tag) {
      case "Crash":
        if (nodeStates.get(fault.node)?.up !== false) {
          nodeStates.set(fault.node, { up: false, sinceMs: atMs })
        }
        return
      case "Restart":
        if (nodeStates.get(fault.node)?.up === false) {
          nodeStates.set(fault.node, { up: true, sinceMs: atMs })
        }
        return
      case "Partition":
        for (const a of fault.side) {
          for (const b of fault.other) {
            if (a === b) continue
            setLink(a, b, { cut: true, config: getLink(a, b).config }, atMs)
            if (!fault.oneWay) setLink(b, a, { cut: true, config: getLink(b, a).config }, atMs)
          }
        }
        return
      case "Heal":
        for (const from of nodes) {
          for (const to of nodes) {
            if (from !== to)
              setLink(from, to, { cut: false, config: getLink(from, to).config }, atMs)
          }
        }
        return
      case "SetLink":
        setLink(
          fault.from,
          fault.to,
          { cut: getLink(fault.from, fault.to).cut, config: fault.link },
          atMs,
        )
        return
    }
  }
  return {
    nodes,
    node: (node) => nodeStates.get(node) ?? { up: false, sinceMs: startMs },
    link: getLink,
    apply,
  }
}
