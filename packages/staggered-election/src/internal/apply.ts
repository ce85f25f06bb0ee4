/** Applying what is committed, on the master and the backups alike. */
import { Machine as M } from "@understudy/machine"
import * as Replication from "../Replication.ts"
import type { Output, Settings } from "./settings.ts"
import type { Event, State } from "./state.ts"

/** Applies what is committed (then compacts, with snapshots); the master answers each request it applies. */
export const applyCommitted = <S, Req, Res>(
  settings: Settings<S, Req, Res>,
  state: State<S, Req, Res>,
  outputs: Array<Output<Req, Res>>,
): State<S, Req, Res> => {
  const { config, snapshots, compactEvery } = settings
  const { replica, applied } = Replication.applyCommitted(state.replica, config.apply)
  if (state.role === "master") {
    for (const done of applied) {
      outputs.push(
        M.emit<Event<Res>>({
          _tag: "Answered",
          clientId: done.clientId,
          requestId: done.requestId,
          result: done.result,
        }),
      )
    }
  }
  const compacted = snapshots === undefined ? replica : Replication.compact(replica, compactEvery)
  return compacted === state.replica ? state : { ...state, replica: compacted }
}
