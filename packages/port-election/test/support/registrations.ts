import { protocolVersion } from "../../src/internal/protocol.ts"
import type * as Registry from "../../src/Registry.ts"

/** A valid registration of program "app" by `instanceId` (pid 100, holding nothing). */
export const register = (
  instanceId: string,
  overrides: Partial<Registry.Register> = {},
): Registry.Register => ({
  _tag: "Register",
  program: "app",
  version: protocolVersion,
  instanceId,
  pid: 100,
  startedAtMs: 1,
  metadata: {},
  holdings: [],
  ...overrides,
})
