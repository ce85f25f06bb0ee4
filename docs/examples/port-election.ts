/**
 * docs/port-election.md, "Three copies, one supervisor": three instances of one program
 * bind the same socket file (in a directory only this user may enter); one supervises, the others register with it; when the
 * supervisor leaves, a survivor takes over at once.
 */
import { randomBytes } from "node:crypto"
import { Election, SocketDirectory } from "@understudy/port-election"
import { NodeTransport } from "@understudy/transport"
import { Effect, Exit, Fiber, Redacted, Scope, Stream } from "effect"

export const program = Effect.gen(function* () {
  // $XDG_RUNTIME_DIR/understudy-docs-example-NAME.sock (else in ~/.understudy): no other
  // user can bind it first or connect to it.
  const address = yield* SocketDirectory.defaultAddress(
    "docs-example",
    randomBytes(4).toString("hex"),
  )
  // Tests pass the per-user secret directly; by default it is ~/.understudy/secret.
  const secret = Redacted.make(new Uint8Array(randomBytes(32)))
  const join = (scope: Scope.Scope) =>
    Election.make({ program: "docs-example", address, secret }).pipe(
      Scope.provide(scope),
      Effect.provide(NodeTransport.layer),
    )
  const scopes = [yield* Scope.make(), yield* Scope.make(), yield* Scope.make()] as const
  const first = yield* join(scopes[0])
  const second = yield* join(scopes[1])
  const third = yield* join(scopes[2])
  const rolesBefore = [yield* first.role, yield* second.role, yield* third.role].map((r) => r._tag)

  const elected = yield* Effect.forkChild(
    Stream.runHead(
      Stream.filter(Stream.merge(second.events, third.events), (e) => e._tag === "Elected"),
    ),
  )
  yield* Effect.sleep(10)
  // The supervisor leaves; a survivor binds the address and the other registers with it.
  yield* Scope.close(scopes[0], Exit.void)
  const winner = yield* Fiber.join(elected).pipe(Effect.timeout("5 seconds"))
  // The other survivor registers with the winner within moments.
  const settled = Effect.map(Effect.all([second.role, third.role]), (roles) =>
    roles
      .map((r) => r._tag)
      .sort()
      .join(),
  )
  for (let i = 0; i < 50 && (yield* settled) !== "Subordinate,Supervisor"; i++) {
    yield* Effect.sleep(20)
  }
  const rolesAfter = (yield* settled).split(",")
  yield* Scope.close(scopes[1], Exit.void)
  yield* Scope.close(scopes[2], Exit.void)
  return { rolesBefore, rolesAfter, winnerElected: winner._tag === "Some" }
})

if (import.meta.main) {
  Effect.runPromise(program).then((result) => console.log(result))
}
