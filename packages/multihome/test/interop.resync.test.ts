/**
 * A stale replica taking over from usrsctp's point of view: the bare machine (Listener +
 * Association) over a UDP socket on 127.0.0.2 echoes usrsctp `client`'s lines; a snapshot
 * is taken, the "primary" echoes more lines, then a replica restored from the older
 * snapshot takes over with `resync` and the replication's reserve. usrsctp must accept the
 * FORWARD TSN (RFC 3758) that skips what the primary used, and deliver the replica's echoes.
 */

import { type ChildProcess, spawn } from "node:child_process"
import * as Dgram from "node:dgram"
import { existsSync } from "node:fs"
import { networkInterfaces } from "node:os"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Eventually } from "@understudy/testkit"
import { Result } from "effect"
import * as Association from "../src/Association.ts"
import { loopbackAlias } from "../src/Endpoint.ts"
import * as Listener from "../src/Listener.ts"
import * as Packet from "../src/Packet.ts"

const clientPath = "/usr/lib/usrsctp/client"
const ourPort = 5000

const children = new Set<ChildProcess>()
const cleanups: Array<() => void> = []

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup()
  const exits = [...children].map(
    (child) =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        child.once("exit", () => resolve())
        child.kill("SIGKILL")
      }),
  )
  children.clear()
  await Promise.all(exits)
})

/** A free UDP port on every IPv4 and IPv6 address (usrsctp binds its own on both). */
const freePort = async (): Promise<number> => {
  const socket = Dgram.createSocket({ type: "udp6", ipv6Only: false })
  await new Promise<void>((resolve) => socket.bind(0, "::", resolve))
  const port = socket.address().port
  await new Promise<void>((resolve) => socket.close(() => resolve()))
  return port
}

/** The machine on a socket, echoing every message; `state` can be swapped for a replica. */
class Driver {
  readonly socket = Dgram.createSocket("udp4")
  readonly listener: Listener.Listener
  state: Association.State | undefined
  readonly timers = new Map<string, ReturnType<typeof setTimeout>>()
  readonly events: Array<Association.Event> = []
  /**
   * usrsctp sends to 127.0.0.2 from 127.0.0.1, which its INIT does not list, and drops an
   * INIT ACK sent there: as the Endpoint does, its source is replaced by an address it lists.
   */
  readonly aliases = new Map<string, string>()
  readonly start = performance.now()

  constructor(config: Association.Config) {
    this.listener = Listener.makeListener(config, 0x5eed)
    this.socket.on("message", (bytes, from) => this.receive(new Uint8Array(bytes), from))
  }

  now(): number {
    return Math.floor(performance.now() - this.start)
  }

  receive(bytes: Uint8Array, from: Dgram.RemoteInfo): void {
    const decoded = Packet.decode(bytes)
    if (!Result.isSuccess(decoded)) return
    const key = `${from.address}:${from.port}`
    const first = decoded.success.chunks[0]
    if (first?._tag === "Init") {
      const hostAddresses = Object.values(networkInterfaces()).flatMap((list) =>
        (list ?? []).map((entry) => entry.address),
      )
      const alias = loopbackAlias(from.address, first, hostAddresses)
      if (alias !== undefined) this.aliases.set(key, alias)
    }
    const input: Association.Input = {
      _tag: "Receive",
      from: { host: this.aliases.get(key) ?? from.address, udpPort: from.port },
      message: decoded.success,
      nowMs: this.now(),
    }
    const state = this.state
    if (state !== undefined && state.name !== "Closed") {
      if (decoded.success.verificationTag === state.myTag || first?._tag === "Init") {
        this.perform(Association.step(state, input).outputs)
        return
      }
    }
    const outcome = Listener.onUnknownPacket(this.listener, input)
    if (outcome.association !== undefined) this.state = outcome.association
    this.perform(outcome.outputs)
  }

  perform(outputs: ReadonlyArray<Association.Output>): void {
    const echoes: Array<Association.Command> = []
    for (const output of outputs) {
      switch (output._tag) {
        case "Send":
          this.socket.send(Packet.encode(output.message), output.to.udpPort, output.to.host)
          break
        case "SetTimer": {
          clearTimeout(this.timers.get(output.timer))
          const timer = output.timer
          this.timers.set(
            timer,
            setTimeout(
              () => {
                this.timers.delete(timer)
                const state = this.state
                if (state === undefined) return
                this.perform(
                  Association.step(state, { _tag: "TimerFired", timer, nowMs: this.now() }).outputs,
                )
              },
              Math.max(0, output.afterMs),
            ),
          )
          break
        }
        case "CancelTimer":
          clearTimeout(this.timers.get(output.timer))
          this.timers.delete(output.timer)
          break
        case "Emit":
          this.events.push(output.event)
          if (output.event._tag === "Message") {
            const { stream, ppid, unordered, data } = output.event
            echoes.push({ _tag: "Send", stream, ppid, unordered, data })
          }
          break
      }
    }
    const state = this.state
    for (const command of echoes) {
      if (state === undefined) break
      this.perform(Association.step(state, { _tag: "Command", command, nowMs: this.now() }).outputs)
    }
  }

  /** The primary dies: its timers with it; the replica takes over. */
  failOver(snapshot: Association.Snapshot, options: Association.TakeOverOptions): void {
    for (const timer of this.timers.values()) clearTimeout(timer)
    this.timers.clear()
    const replica = Association.restore(this.listener.config, structuredClone(snapshot))
    this.state = replica
    this.perform(Association.takeOver(replica, this.now(), options))
  }

  close(): void {
    for (const timer of this.timers.values()) clearTimeout(timer)
    this.socket.close()
  }
}

describe("interop: a stale replica's FORWARD TSN with usrsctp", () => {
  it("the client is installed", () => {
    expect(existsSync(clientPath)).toBe(true)
  })

  it("usrsctp skips the reserved TSNs and SSNs and gets the replica's echoes", async () => {
    const driver = new Driver({
      ...Association.defaultConfig,
      localPort: ourPort,
      localAddresses: ["127.0.0.2"],
    })
    cleanups.push(() => driver.close())
    await new Promise<void>((resolve) => driver.socket.bind(0, "127.0.0.2", resolve))
    const clientEncapsulationPort = await freePort()
    let output = ""
    const child = spawn(
      clientPath,
      [
        "127.0.0.2",
        String(ourPort),
        "0",
        String(clientEncapsulationPort),
        String(driver.socket.address().port),
      ],
      { stdio: ["pipe", "pipe", "pipe"] },
    )
    children.add(child)
    child.stdout?.on("data", (data: Buffer) => {
      output += data.toString()
    })
    child.stderr?.on("data", (data: Buffer) => {
      output += data.toString()
    })
    const line = (index: number) => `line ${index} ${"y".repeat(index)}`
    const echoed = (from: number, to: number) => {
      for (let index = from; index < to; index++) if (!output.includes(line(index))) return false
      return true
    }
    for (let index = 0; index < 5; index++) child.stdin?.write(`${line(index)}\n`)
    // The client's output when a wait fails (CI shows it).
    const showing = (wait: Promise<unknown>) =>
      wait.catch((error: unknown) => {
        console.log(output)
        throw error
      })
    await showing(Eventually.promise("lines 0-4 echoed", () => echoed(0, 5), { within: 15_000 }))
    // Everything acknowledged both ways before the snapshot.
    const acknowledged = () =>
      Eventually.promise(
        "everything we sent acknowledged",
        () => driver.state?.outstanding.length === 0,
        {
          within: 5_000,
        },
      )
    await acknowledged()
    const stale = Association.snapshot(driver.state!)
    expect(stale.forwardTsnSupported).toBe(true)
    for (let index = 5; index < 10; index++) child.stdin?.write(`${line(index)}\n`)
    await showing(Eventually.promise("lines 5-9 echoed", () => echoed(5, 10), { within: 15_000 }))
    await acknowledged()
    // What the replication makes known before a SACK leaves: the primary's Cumulative TSN Ack.
    const cumulativeTsnAck = driver.state!.tracker!.cumulative
    driver.failOver(stale, { resync: true, cumulativeTsnAck, reserve: { tsn: 8192, ssn: 1024 } })
    for (let index = 10; index < 15; index++) child.stdin?.write(`${line(index)}\n`)
    await showing(
      Eventually.promise("lines 10-14 echoed by the replica", () => echoed(10, 15), {
        within: 20_000,
      }),
    )
    const replica = driver.state!
    expect(replica.name).toBe("Established")
    await Eventually.promise(
      "the FORWARD TSN acknowledged",
      () => replica.forwardTsn === undefined,
      {
        within: 5_000,
      },
    )
    // usrsctp's cumulative TSN ack went over the whole reserve: it took the FORWARD TSN.
    await Eventually.promise(
      "the replica's DATA acknowledged",
      () => replica.outstanding.length === 0,
      {
        within: 5_000,
      },
    )
    const status = Association.info(replica)
    expect((status.nextTsn - stale.nextTsn) >>> 0).toBe(8192 + 5)
    expect(status.cumulativeTsnAcked).toBe((status.nextTsn - 1) >>> 0)
    expect(child.exitCode).toBeNull()

    // usrsctp printed every echo once; the replica received lines 10–14 once each.
    for (let index = 0; index < 15; index++)
      expect(output.split(`${line(index)}\n`)).toHaveLength(2)
    const after = driver.events.filter((e) => e._tag === "Message").slice(10)
    expect(
      after.map((m) => (m._tag === "Message" ? new TextDecoder().decode(m.data) : "")),
    ).toEqual(Array.from({ length: 5 }, (_, i) => `${line(10 + i)}\n`))
  }, 60_000)
})
