/**
 * Every scenario the showcase runs, in order. A new mechanism adds one module under
 * `scenarios/` exporting a `Scenario`, and one line here.
 *
 * @since 0.1.0
 */
import type { Scenario } from "../Scenario.ts"
import { scenario as licensePool } from "./licensePool.ts"
import { scenario as portElection } from "./portElection.ts"
import { scenario as sctpCluster } from "./sctpCluster.ts"
import { scenario as staggeredElection } from "./staggeredElection.ts"
import { scenario as takeoverStream } from "./takeoverStream.ts"
import { scenario as tcpRepair } from "./tcpRepair.ts"

/** @since 0.1.0 */
export const scenarios: ReadonlyArray<Scenario> = [
  portElection,
  staggeredElection,
  sctpCluster,
  licensePool,
  takeoverStream,
  tcpRepair,
]
