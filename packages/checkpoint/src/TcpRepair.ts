/**
 * The `tcp-repair` backend: Linux's `TCP_REPAIR` socket option lets a takeover server
 * rebuild the very TCP connection a dead server had (sequence numbers, options, window) so
 * that an unmodified client (curl, wget, a browser) never notices. Requires Linux and
 * CAP_NET_ADMIN (root); elsewhere, `available` fails with `CheckpointBackendUnavailable`
 * saying why, and the portable `session` backend still works.
 *
 * The object server checkpoints each transfer through the package's `CheckpointStore`
 * (backend `tcp-repair`; one bundle per connection, fenced writes, the owner key on the
 * server's lease), with two contributors: the kernel TCP layer (both initial sequence
 * numbers, MSS, window scales, SACK, timestamps, the repair window) and the HTTP layer (the
 * response head, the object id, the sequence number of its first byte). A takeover server
 * claims the bundle once its server's lease lapsed, and after resuming adopts it and
 * checkpoints on, so that a third server can take over from it in turn. A takeover server
 * rebuilds the connection in repair mode before it has the service address, claims the
 * address, makes the client repeat its acknowledgement, compares it with the checkpoint,
 * puts back the bytes the client already has, and only then leaves repair mode and sends
 * the object from the exact byte. A client whose acknowledgement the checkpoint can not
 * cover is reset at its own sequence number: never a wrong byte. An upload (PUT) is received
 * on a muted connection and acknowledged by the program only once stored (see the README),
 * so a takeover server goes on from the stored length.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { CheckpointBackendUnavailable } from "./CheckpointError.ts"
import * as L from "./internal/tcpRepair/libc.ts"

export { announce } from "./internal/tcpRepair/arp.ts"

export {
  type ObjectSource,
  type ServeOptions,
  serve,
  type TakeoverOptions,
  type TakeoverOutcome,
  takeover,
} from "./internal/tcpRepair/objectServer.ts"

/**
 * Why this process can not use `TCP_REPAIR`, or the libc bindings when it can: tries the
 * option on a fresh socket (the kernel answers EPERM without CAP_NET_ADMIN).
 *
 * @since 0.1.0
 * @category availability
 */
export const probe = (): L.Libc | string => {
  const libc = L.load()
  if (typeof libc === "string") return libc
  const fd = libc.socket(L.AF_INET, L.SOCK_STREAM | L.SOCK_CLOEXEC, 0)
  if (fd < 0) return `socket() failed (errno ${libc.errno()})`
  try {
    if (libc.setsockopt(fd, L.IPPROTO_TCP, L.TCP_REPAIR, L.int32(1), 4) === 0) return libc
    const errno = libc.errno()
    return errno === L.EPERM
      ? "TCP_REPAIR needs CAP_NET_ADMIN (run as root or grant the capability)"
      : `TCP_REPAIR is refused by this kernel (errno ${errno})`
  } finally {
    libc.close(fd)
  }
}

/**
 * Succeeds when this process can rebuild TCP connections; otherwise a
 * `CheckpointBackendUnavailable` whose `reason` says why (not Linux, koffi missing, no
 * CAP_NET_ADMIN).
 *
 * @since 0.1.0
 * @category availability
 */
export const available: Effect.Effect<void, CheckpointBackendUnavailable> = Effect.suspend(() => {
  const result = probe()
  return typeof result === "string"
    ? Effect.fail(new CheckpointBackendUnavailable({ backend: "tcp-repair", reason: result }))
    : Effect.void
})
