import { describe, expect, it } from "@effect/vitest"
import { Machine as M } from "@understudy/machine"
import { NotPermitted } from "../src/ElectionError.ts"
import * as ElectionLoop from "../src/ElectionLoop.ts"

const config: ElectionLoop.Config = {
  address: "unix://@test",
  attemptsMax: 3,
  standbyWaitMs: 500,
  seed: 7,
}

type Input = M.Input<never, ElectionLoop.Command>
const command = (command: ElectionLoop.Command, nowMs = 0): Input => M.command(command, nowMs)
const fired = (timer: string, nowMs = 0): Input => M.timerFired(timer, nowMs)

/** Steps `inputs` in turn from a fresh machine; the last state and each step's outputs, init's first. */
const run = (inputs: ReadonlyArray<Input>, options: Partial<ElectionLoop.Config> = {}) => {
  const machine = ElectionLoop.make({ ...config, ...options })
  const started = machine.init({ self: "me", peers: [], nowMs: 0 })
  let state = started.state
  const steps: Array<ReadonlyArray<ElectionLoop.Output>> = [started.outputs]
  for (const input of inputs) {
    const next = machine.step(state, input)
    state = next.state
    steps.push(next.outputs)
  }
  return { state, steps }
}

const events = (outputs: ReadonlyArray<ElectionLoop.Output>) => M.events(outputs)
const timers = (outputs: ReadonlyArray<ElectionLoop.Output>) =>
  outputs.filter((output) => output._tag === "SetTimer" || output._tag === "CancelTimer")

const addressInUse = command({ _tag: "BindFailed", addressInUse: true, detail: "in use" })
const unreachable = command({ _tag: "ConnectFailed", reason: "Unreachable", detail: "refused" })
/** One attempt that found the address held and nobody answering, then its back-off. */
const heldButSilent = [addressInUse, unreachable, fired(ElectionLoop.backoffTimer)]
const lost = (standingBy: boolean) => command({ _tag: "Ended", outcome: "lost", standingBy })

describe("the election loop's machine", () => {
  it("binds first, and supervises for good once bound", () => {
    const { steps, state } = run([command({ _tag: "Bound" }), addressInUse, lost(true)])
    expect(steps[0]).toEqual([M.emit({ _tag: "Bind", epoch: 1 })])
    expect(steps[1]).toEqual([M.emit({ _tag: "Supervise" })])
    expect(steps[2]).toEqual([])
    expect(steps[3]).toEqual([])
    expect(state.phase._tag).toBe("Supervising")
  })

  it("the address in use: stops standing by, connects, and serves its holder", () => {
    const { steps, state } = run([addressInUse, command({ _tag: "Connected" })])
    expect(events(steps[1]!)).toEqual([{ _tag: "StopStandingBy" }, { _tag: "Connect" }])
    expect(events(steps[2]!)).toEqual([{ _tag: "Serve", takeover: false }])
    expect(state.phase).toEqual({ _tag: "Subordinate", takeover: false })
  })

  it("a bind that fails for another reason fails the election after one attempt", () => {
    const { steps, state } = run([
      command({ _tag: "BindFailed", addressInUse: false, detail: "EACCES" }),
    ])
    const [stop, over, failed] = events(steps[1]!)
    expect([stop, over]).toEqual([{ _tag: "StopStandingBy" }, { _tag: "AttemptOver", keep: false }])
    expect(failed).toMatchObject({
      _tag: "Failed",
      error: { _tag: "ElectionFailed", address: "unix://@test", attempts: 1, detail: "EACCES" },
    })
    expect(state.phase._tag).toBe("Failed")
  })

  it("each handshake failure names what holds the address", () => {
    const cases = [
      ["NotUnderstudy", { _tag: "StrangerOnAddress", detail: "HTTP/1.1" }],
      ["VersionMismatch", { _tag: "OtherProgramOnAddress", reason: "IncompatibleVersion" }],
      ["AuthenticationFailed", { _tag: "NotPermitted", detail: "HTTP/1.1" }],
      ["AuthenticationRequired", { _tag: "NotPermitted", detail: "HTTP/1.1" }],
    ] as const
    for (const [reason, error] of cases) {
      const { steps } = run([
        addressInUse,
        command({ _tag: "ConnectFailed", reason, detail: "HTTP/1.1" }),
      ])
      const [over, failed] = events(steps[2]!)
      expect(over).toEqual({ _tag: "AttemptOver", keep: false })
      expect(failed).toMatchObject({ _tag: "Failed", error: { address: "unix://@test", ...error } })
    }
  })

  it("nobody answering: backs off with jitter under a growing ceiling, then binds again", () => {
    const { steps, state } = run([...heldButSilent, ...heldButSilent], { attemptsMax: 5 })
    expect(events(steps[2]!)).toEqual([{ _tag: "AttemptOver", keep: false }])
    const [first] = timers(steps[2]!)
    const [second] = timers(steps[5]!)
    expect(first).toMatchObject({ _tag: "SetTimer", timer: ElectionLoop.backoffTimer })
    expect(second).toMatchObject({ _tag: "SetTimer", timer: ElectionLoop.backoffTimer })
    // Ceilings 2 and 4 ms after one and two failures.
    expect((first as M.SetTimer).afterMs).toBeGreaterThanOrEqual(1)
    expect((first as M.SetTimer).afterMs).toBeLessThanOrEqual(2)
    expect((second as M.SetTimer).afterMs).toBeLessThanOrEqual(4)
    expect(steps[3]).toEqual([M.emit({ _tag: "Bind", epoch: 2 })])
    expect(steps[6]).toEqual([M.emit({ _tag: "Bind", epoch: 3 })])
    expect(state.failures).toBe(2)
  })

  it("the jitter comes from the seed: the same seed, the same back-offs; the ceiling stops at 250 ms", () => {
    const backoffs = (seed: number) =>
      run(Array.from({ length: 12 }, () => heldButSilent).flat(), { seed, attemptsMax: 20 })
        .steps.flatMap(timers)
        .map((timer) => (timer as M.SetTimer).afterMs)
    expect(backoffs(7)).toEqual(backoffs(7))
    expect(backoffs(7)).not.toEqual(backoffs(8))
    const all = [...backoffs(7), ...backoffs(8), ...backoffs(9)]
    expect(Math.max(...all)).toBeLessThanOrEqual(250)
    // Past eight failures the draws spread over the whole 250 ms.
    expect(Math.max(...all)).toBeGreaterThan(125)
  })

  it("fails after attemptsMax attempts in a row, once the last back-off is over", () => {
    const { steps, state } = run([...heldButSilent, ...heldButSilent, addressInUse, unreachable])
    expect(state.phase._tag).toBe("BackingOff")
    const last = run([...heldButSilent, ...heldButSilent, ...heldButSilent])
    expect(events(last.steps.at(-1)!)).toMatchObject([
      {
        _tag: "Failed",
        error: {
          _tag: "ElectionFailed",
          attempts: 3,
          detail: "the instance.address was held but never answered",
        },
      },
    ])
    expect(timers(steps.at(-1)!)).toMatchObject([{ timer: ElectionLoop.backoffTimer }])
  })

  it("a supervisor lost: the attempts start again from none, and the attempt's scope is kept", () => {
    const { steps, state } = run([
      ...heldButSilent,
      ...heldButSilent,
      addressInUse,
      command({ _tag: "Connected" }),
      lost(false),
      ...heldButSilent,
      ...heldButSilent,
      addressInUse,
      unreachable,
    ])
    expect(events(steps[9]!)).toEqual([
      { _tag: "AttemptOver", keep: true },
      { _tag: "Bind", epoch: 4 },
    ])
    // Three in a row since the loss, and its back-off still runs: not failed yet.
    expect(state.phase._tag).toBe("BackingOff")
    expect(state.failures).toBe(3)
  })

  it("a supervisor lost with a standby link up: waits for the successor's takeover and serves it", () => {
    const { steps, state } = run([
      addressInUse,
      command({ _tag: "Connected" }),
      lost(true),
      command({ _tag: "TakenOver" }),
      lost(true),
    ])
    expect(steps[3]).toEqual([
      M.emit({ _tag: "AttemptOver", keep: true }),
      M.emit({ _tag: "AwaitTakeover", epoch: 2 }),
      M.setTimer(ElectionLoop.standbyTimer, 500),
    ])
    expect(steps[4]).toEqual([
      M.cancelTimer(ElectionLoop.standbyTimer),
      M.emit({ _tag: "Serve", takeover: true }),
    ])
    // Lost again, a link to the next successor up: waits for that one.
    expect(events(steps[5]!)).toEqual([
      { _tag: "AttemptOver", keep: true },
      { _tag: "AwaitTakeover", epoch: 3 },
    ])
    expect(state.phase._tag).toBe("AwaitingTakeover")
  })

  it("no takeover (in time, or the link ended): elects the usual way, no failure counted", () => {
    const waiting = [addressInUse, command({ _tag: "Connected" }), lost(true)]
    const timedOut = run([
      ...waiting,
      fired(ElectionLoop.standbyTimer),
      command({ _tag: "TakenOver" }),
    ])
    expect(timedOut.steps[4]).toEqual([
      M.emit({ _tag: "AttemptOver", keep: false }),
      M.emit({ _tag: "Bind", epoch: 3 }),
    ])
    // The takeover that comes late is not waited for any more.
    expect(timedOut.steps[5]).toEqual([])
    const ended = run([
      ...waiting,
      command({ _tag: "NoTakeover" }),
      fired(ElectionLoop.standbyTimer),
    ])
    expect(ended.steps[4]).toEqual([
      M.cancelTimer(ElectionLoop.standbyTimer),
      M.emit({ _tag: "AttemptOver", keep: false }),
      M.emit({ _tag: "Bind", epoch: 3 }),
    ])
    expect(ended.steps[5]).toEqual([])
    expect(ended.state.failures).toBe(0)
  })

  it("not welcomed over the standby link: binds at once; over a connection: backs off", () => {
    const retry = command({ _tag: "Ended", outcome: "retry", standingBy: false })
    const overLink = run([
      addressInUse,
      command({ _tag: "Connected" }),
      lost(true),
      command({ _tag: "TakenOver" }),
      retry,
    ])
    expect(overLink.steps[5]).toEqual([
      M.emit({ _tag: "AttemptOver", keep: false }),
      M.emit({ _tag: "Bind", epoch: 3 }),
    ])
    expect(overLink.state.failures).toBe(0)
    const overConnection = run([addressInUse, command({ _tag: "Connected" }), retry])
    expect(events(overConnection.steps[3]!)).toEqual([{ _tag: "AttemptOver", keep: false }])
    expect(timers(overConnection.steps[3]!)).toMatchObject([{ timer: ElectionLoop.backoffTimer }])
    expect(overConnection.state.failures).toBe(1)
  })

  it("the subordinate's term fails the election with its error", () => {
    const error = new NotPermitted({ address: "unix://@test", detail: "refused" })
    const { steps, state } = run([
      addressInUse,
      command({ _tag: "Connected" }),
      command({ _tag: "SubordinateFailed", error }),
    ])
    expect(events(steps[3]!)).toEqual([
      { _tag: "AttemptOver", keep: false },
      { _tag: "Failed", error },
    ])
    expect(state.phase).toEqual({ _tag: "Failed", error })
  })

  it("what does not belong to the phase changes nothing", () => {
    const binding = run([
      fired(ElectionLoop.backoffTimer),
      fired(ElectionLoop.standbyTimer),
      command({ _tag: "Connected" }),
      command({ _tag: "TakenOver" }),
      lost(true),
    ])
    expect(binding.steps.slice(1)).toEqual([[], [], [], [], []])
    expect(binding.state).toEqual(run([]).state)
  })
})
