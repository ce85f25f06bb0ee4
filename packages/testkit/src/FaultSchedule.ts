/**
 * Fault schedules: when to crash and restart which node, cut the network (both ways or one
 * way), heal it, and degrade or restore single links. A schedule is a pure function of its
 * seed and options, so a seed names one run exactly; `format` prints it for a failure report.
 *
 * Only faults the protocols claim to survive are generated: a bounded number of nodes down
 * at once, links that lose, delay, duplicate and reorder within stated bounds. From `endMs`
 * on, nothing more happens except, with `healAtEnd`, one last heal and restore of every link
 * so that convergence can be checked.
 *
 * @since 0.1.0
 */
import type { Machine } from "@understudy/machine"
import type { SimNet } from "@understudy/transport"
import * as Prng from "./Prng.ts"

/** @since 0.1.0 @category models */
export type Fault =
  | { readonly _tag: "Crash"; readonly node: Machine.NodeId; readonly mode: "process" | "host" }
  | { readonly _tag: "Restart"; readonly node: Machine.NodeId }
  | {
      readonly _tag: "Partition"
      readonly side: ReadonlyArray<Machine.NodeId>
      readonly other: ReadonlyArray<Machine.NodeId>
      readonly oneWay: boolean
    }
  | { readonly _tag: "Heal" }
  | {
      readonly _tag: "SetLink"
      readonly from: Machine.NodeId
      readonly to: Machine.NodeId
      readonly link: SimNet.LinkConfig
    }

/** A fault and when it happens (Clock time of the simulation). @since 0.1.0 @category models */
export interface Scheduled {
  readonly atMs: number
  readonly fault: Fault
}

/** The kinds of fault to draw, by relative weight. @since 0.1.0 @category models */
export interface Weights {
  readonly crash: number
  readonly restart: number
  readonly partition: number
  readonly oneWayPartition: number
  readonly heal: number
  readonly degrade: number
  readonly restore: number
}

/** @since 0.1.0 @category models */
export interface Options {
  readonly nodes: ReadonlyArray<Machine.NodeId>
  /** No fault at or after this time. */
  readonly endMs: number
  /** No fault before this time, so the nodes start on a healthy network. Default 0. */
  readonly startMs?: number
  /** Time between two faults, drawn uniformly. Default 50..400 ms. */
  readonly gapMs?: { readonly minMs: number; readonly maxMs: number }
  /** Most nodes down at once. Default a minority: `floor((nodes - 1) / 2)`. */
  readonly maxDown?: number
  readonly weights?: Partial<Weights>
  /** What a restored link is set to (and what the network starts with). */
  readonly goodLink: SimNet.LinkConfig
  /** Bounds of a degraded link. */
  readonly degraded?: {
    readonly maxLatencyMs?: number
    readonly maxLoss?: number
    readonly maxDuplicate?: number
    readonly maxReorder?: number
  }
  /** At `endMs`, heal every partition and restore every degraded link. Default true. */
  readonly healAtEnd?: boolean
  /**
   * At `endMs`, also restart every node still down. For protocols that keep nothing across
   * a restart, progress after the heal may need every node back; safety is still checked
   * throughout. Default false.
   */
  readonly restartAtEnd?: boolean
  /** Most faults generated. Default 10,000. */
  readonly maxFaults?: number
}

const defaultWeights: Weights = {
  crash: 2,
  restart: 2,
  partition: 1,
  oneWayPartition: 1,
  heal: 1,
  degrade: 2,
  restore: 2,
}

/**
 * The largest delay a link with this configuration can give a datagram in `SimNet`: its
 * latency, plus the extra delay of reordering (up to twice the latency) when it may reorder.
 *
 * @since 0.1.0
 * @category getters
 */
export const maxDelayMs = (link: SimNet.LinkConfig): number => {
  const latencyMs = link.latency._tag === "Fixed" ? link.latency.ms : link.latency.maxMs
  return link.reorder > 0 ? latencyMs + 2 * Math.max(latencyMs, 1) : latencyMs
}

/**
 * The largest delay any link can have under `options`, for liveness bounds that must hold
 * even for a message sent on a degraded link.
 *
 * @since 0.1.0
 * @category getters
 */
export const maxDelayOverallMs = (options: Options): number => {
  const degraded = options.degraded ?? {}
  const worst = maxDelayMs({
    latency: { _tag: "Fixed", ms: degraded.maxLatencyMs ?? defaultDegradedLatencyMs },
    loss: 0,
    duplicate: 0,
    reorder: (degraded.maxReorder ?? defaultDegradedReorder) > 0 ? 1 : 0,
  })
  return Math.max(worst, maxDelayMs(options.goodLink))
}

const defaultDegradedLatencyMs = 200
const defaultDegradedReorder = 0.2

const linkKey = (from: string, to: string) => `${from}\u0000${to}`

/**
 * Generates the schedule of a seed: the same seed and options always give the same faults.
 *
 * @since 0.1.0
 * @category constructors
 */
export const generate = (seed: number, options: Options): Array<Scheduled> => {
  const random = Prng.make(seed)
  const nodes = options.nodes
  const weights: Weights = { ...defaultWeights, ...options.weights }
  const gap = options.gapMs ?? { minMs: 50, maxMs: 400 }
  const maxDown = options.maxDown ?? Math.floor((nodes.length - 1) / 2)
  const maxFaults = options.maxFaults ?? 10_000
  const degraded = options.degraded ?? {}
  const maxLatencyMs = degraded.maxLatencyMs ?? defaultDegradedLatencyMs
  const maxLoss = degraded.maxLoss ?? 0.5
  const maxDuplicate = degraded.maxDuplicate ?? 0.2
  const maxReorder = degraded.maxReorder ?? defaultDegradedReorder

  // What the generator knows of the network, so every fault makes sense when it happens.
  const down = new Set<Machine.NodeId>()
  const degradedLinks = new Set<string>()
  let partitioned = false
  const schedule: Array<Scheduled> = []

  const split = (): [Array<Machine.NodeId>, Array<Machine.NodeId>] => {
    const shuffled = random.shuffle(nodes)
    const cut = random.int(1, nodes.length - 1)
    return [shuffled.slice(0, cut).sort(), shuffled.slice(cut).sort()]
  }

  const draw = (): Fault | undefined => {
    const up = nodes.filter((node) => !down.has(node))
    const choices: Array<[keyof Weights, number]> = []
    if (down.size < maxDown && up.length > 1) choices.push(["crash", weights.crash])
    if (down.size > 0) choices.push(["restart", weights.restart])
    if (nodes.length > 1) {
      choices.push(["partition", weights.partition], ["oneWayPartition", weights.oneWayPartition])
      choices.push(["degrade", weights.degrade])
    }
    if (partitioned) choices.push(["heal", weights.heal])
    if (degradedLinks.size > 0) choices.push(["restore", weights.restore])
    const total = choices.reduce((sum, [, weight]) => sum + weight, 0)
    if (total <= 0) return undefined
    let roll = random.next() * total
    let kind: keyof Weights = choices[0]![0]
    for (const [candidate, weight] of choices) {
      if (roll < weight) {
        kind = candidate
        break
      }
      roll -= weight
    }
    switch (kind) {
      case "crash": {
        const node = random.pick(up)
        down.add(node)
        return { _tag: "Crash", node, mode: random.chance(0.5) ? "process" : "host" }
      }
      case "restart": {
        const node = random.pick([...down].sort())
        down.delete(node)
        return { _tag: "Restart", node }
      }
      case "partition":
      case "oneWayPartition": {
        const [side, other] = split()
        partitioned = true
        return { _tag: "Partition", side, other, oneWay: kind === "oneWayPartition" }
      }
      case "heal":
        partitioned = false
        return { _tag: "Heal" }
      case "degrade": {
        const [from, to] = random.shuffle(nodes)
        const minMs = random.int(0, maxLatencyMs)
        const link: SimNet.LinkConfig = {
          latency: random.chance(0.5)
            ? { _tag: "Fixed", ms: minMs }
            : { _tag: "Uniform", minMs, maxMs: random.int(minMs, maxLatencyMs) },
          loss: random.chance(0.6) ? round(random.next() * maxLoss) : 0,
          duplicate: random.chance(0.3) ? round(random.next() * maxDuplicate) : 0,
          reorder: random.chance(0.3) ? round(random.next() * maxReorder) : 0,
        }
        degradedLinks.add(linkKey(from!, to!))
        return { _tag: "SetLink", from: from!, to: to!, link }
      }
      case "restore": {
        const key = random.pick([...degradedLinks].sort())
        degradedLinks.delete(key)
        const [from, to] = key.split("\u0000") as [string, string]
        return { _tag: "SetLink", from, to, link: options.goodLink }
      }
    }
  }

  let atMs = options.startMs ?? 0
  for (let count = 0; count < maxFaults; count++) {
    atMs += random.int(gap.minMs, gap.maxMs)
    if (atMs >= options.endMs) break
    const fault = draw()
    if (fault !== undefined) schedule.push({ atMs, fault })
  }
  if (options.restartAtEnd ?? false) {
    for (const node of [...down].sort()) {
      schedule.push({ atMs: options.endMs, fault: { _tag: "Restart", node } })
    }
  }
  if (options.healAtEnd ?? true) {
    if (partitioned) schedule.push({ atMs: options.endMs, fault: { _tag: "Heal" } })
    for (const key of [...degradedLinks].sort()) {
      const [from, to] = key.split("\u0000") as [string, string]
      schedule.push({
        atMs: options.endMs,
        fault: { _tag: "SetLink", from, to, link: options.goodLink },
      })
    }
  }
  return schedule
}

/** Probabilities with two decimals, so schedules read well. */
const round = (probability: number): number => Math.round(probability * 100) / 100

const describeLink = (link: SimNet.LinkConfig): string => {
  const latency =
    link.latency._tag === "Fixed"
      ? `${link.latency.ms} ms`
      : `${link.latency.minMs}..${link.latency.maxMs} ms`
  return `latency ${latency} loss ${link.loss} duplicate ${link.duplicate} reorder ${link.reorder}`
}

/**
 * One line per fault.
 *
 * @since 0.1.0
 * @category formatting
 */
export const describe = (fault: Fault): string => {
  switch (fault._tag) {
    case "Crash":
      return `crash ${fault.node} (${fault.mode})`
    case "Restart":
      return `restart ${fault.node}`
    case "Partition":
      return `partition [${fault.side.join(",")}] ${fault.oneWay ? "->" : "<->"} [${fault.other.join(",")}]`
    case "Heal":
      return "heal"
    case "SetLink":
      return `link ${fault.from} -> ${fault.to}: ${describeLink(fault.link)}`
  }
}

/**
 * The schedule, one fault a line with its time.
 *
 * @since 0.1.0
 * @category formatting
 */
export const format = (schedule: ReadonlyArray<Scheduled>): string =>
  schedule.map((item) => `${`${item.atMs}`.padStart(8)} ms  ${describe(item.fault)}`).join("\n")
