// @understudy/port-election: the Promise facade; a lone instance elects itself and takes a slot.
import { randomBytes } from "node:crypto"
import { createInstance } from "@understudy/port-election"
import { Redacted } from "effect"

const instance = await createInstance({
  program: "packaging-test",
  address: `unix://@understudy-packaging-${randomBytes(6).toString("hex")}`,
  secret: Redacted.make(new Uint8Array(randomBytes(32))),
})
const role = await instance.role()
const release = await instance.acquire("slot", { limit: 1 })
await release()
await instance.close()
console.log(JSON.stringify({ role: role._tag }))
