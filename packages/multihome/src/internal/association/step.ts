/**
 * The association machine: Step.
 */
import { onCommand } from "./commands.ts"
import { emit, makeCtx } from "./context.ts"
import type { Input, Output } from "./models.ts"
import { finish } from "./outbound.ts"
import { onReceive } from "./receive.ts"
import type { State } from "./state.ts"
import { onTimer } from "./timers.ts"

/**
 * Feeds one input to the association; mutates `state` and returns what to do.
 *
 * @since 0.1.0
 * @category machine
 */
export const step = (state: State, input: Input): Array<Output> => {
  const ctx = makeCtx(input.nowMs)
  if (state.name === "Closed") {
    emit(ctx, { _tag: "Dropped", reason: "AssociationClosed" })
    return ctx.out
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
  return ctx.out
}
