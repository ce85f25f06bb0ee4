/**
 * The association machine: Step.
 */
import { onCommand } from "./commands.ts"
import { emit, makeCtx } from "./context.ts"
import type { Input, Result } from "./models.ts"
import { finish } from "./outbound.ts"
import { onReceive } from "./receive.ts"
import type { State } from "./state.ts"
import { onTimer } from "./timers.ts"

/**
 * Feeds one input to the association: the `step` of the `@understudy/machine` contract, in
 * its in-place variant (see `Machine.Machine`): `state` is updated and returned as
 * `Result.state`, so the caller holds it alone and keeps no earlier copy (a replica is a
 * {@link snapshot}). Copying the TCB on every packet would cost more than the step.
 *
 * @since 0.1.0
 * @category machine
 */
export const step = (state: State, input: Input): Result => {
  const ctx = makeCtx(input.nowMs)
  if (state.name === "Closed") {
    emit(ctx, { _tag: "Dropped", reason: "AssociationClosed" })
    return { state, outputs: ctx.out }
  }
  switch (input._tag) {
    case "Receive":
      onReceive(ctx, state, input)
      break
    case "TimerFired":
      onTimer(ctx, state, input.timer)
      break
    case "Command":
      onCommand(ctx, state, input.command)
      break
  }
  finish(ctx, state)
  return { state, outputs: ctx.out }
}
