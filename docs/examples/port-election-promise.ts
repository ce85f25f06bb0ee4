/**
 * Getting started and the port election guide, in Promise style: three instances, one
 * supervisor; the supervisor leaves and a survivor is elected. `acquire` gives a
 * machine-wide mutex.
 */
import { randomBytes } from "node:crypto"
import { once } from "node:events"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInstance } from "@understudy/port-election"
import { Redacted } from "effect"

export const main = async () => {
  // A socket file in a directory only this user may enter (mkdtemp makes it 0700), so no
  // other user can bind the address first or connect to it. In a real program:
  // `SocketDirectory.defaultAddress(program, name)`, in $XDG_RUNTIME_DIR or ~/.understudy.
  const directory = mkdtempSync(join(tmpdir(), "understudy-docs-"))
  const address = `unix://${directory}/election.sock`
  // Tests pass the per-user secret directly; by default it is ~/.understudy/secret.
  const secret = Redacted.make(new Uint8Array(randomBytes(32)))
  const options = { program: "docs-example", address, secret }
  const first = await createInstance(options)
  const second = await createInstance(options)
  const third = await createInstance(options)
  const rolesBefore = [first, second, third].map((instance) => instance.role()._tag)

  // A machine-wide mutex: whoever holds it, nobody else gets it until it is released.
  const release = await second.acquire("nightly-build")
  await release()

  // The supervisor leaves; one of the others binds the address and supervises.
  const elected = Promise.race([once(second, "Elected"), once(third, "Elected")])
  await first.close()
  const [event] = await withTimeout(elected, 5_000)
  await second.close()
  await third.close()
  rmSync(directory, { recursive: true, force: true })
  return { rolesBefore, newSupervisor: event.instanceId === second.instanceId ? 2 : 3 }
}

const withTimeout = <A>(promise: Promise<A>, ms: number) =>
  new Promise<A>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nothing within ${ms} ms`)), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error) => {
        clearTimeout(timer)
        reject(error)
      },
    )
  })

if (import.meta.main) {
  main().then((result) => console.log(result))
}
