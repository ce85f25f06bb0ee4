import * as MemoryStore from "../src/MemoryStore.ts"
import { conformance } from "./support/conformance.ts"

conformance("MemoryStore", { layer: MemoryStore.layer, clock: "test", leaseTtlMs: 1_000 })
