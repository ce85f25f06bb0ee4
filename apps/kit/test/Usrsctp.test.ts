/**
 * The usrsctp harness (src/Usrsctp.ts), proved against usrsctp itself before any
 * test trusts it to judge our stack: tsctp talks to tsctp, the client to echo_server, and the
 * shims change what the programs observably do.
 */
import * as Dgram from "node:dgram"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { mkdtemp, rm } from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { ephemeralStart } from "../src/internal/ports.ts"
import * as Usrsctp from "../src/Usrsctp.ts"

afterEach(async () => {
  await Usrsctp.killAll()
  expect(Usrsctp.runningCount()).toBe(0)
})

const bindsOn = (type: "udp4" | "udp6", address: string, port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = Dgram.createSocket(type === "udp6" ? { type, ipv6Only: true } : { type })
    socket.once("error", () => resolve(false))
    socket.bind({ address, port, exclusive: true }, () => socket.close(() => resolve(true)))
  })

describe("usrsctp harness: programs and shims", () => {
  it("finds the four programs", () => {
    for (const file of Object.values(Usrsctp.programs)) expect(existsSync(file)).toBe(true)
  })

  it("builds the shims from this package's own native/ sources", () => {
    const directory = Usrsctp.shimSourceDirectory()
    expect(directory).toBe(Path.join(Path.dirname(import.meta.dirname), "native") + Path.sep)
    for (const name of ["nodebug.c", "tune.c"])
      expect(existsSync(Path.join(directory, name))).toBe(true)
  })

  it("builds the shims idempotently, also when builds race", async () => {
    const parent = await mkdtemp(Path.join(Os.tmpdir(), "usrsctp-harness-"))
    try {
      const raced = await Promise.all([1, 2, 3].map(() => Usrsctp.buildShimsInto(parent)))
      for (const built of raced) expect(built).toEqual(raced[0])
      const first = raced[0] as Usrsctp.Shims
      expect(readFileSync(first.nodebug).subarray(0, 4)).toEqual(Buffer.from("\x7fELF", "latin1"))
      expect(readFileSync(first.tune).subarray(0, 4)).toEqual(Buffer.from("\x7fELF", "latin1"))
      // No temporary build directory is left behind.
      const left = readdirSync(parent)
      expect(left).toEqual([Path.basename(Path.dirname(first.nodebug))])
      expect(await Usrsctp.buildShimsInto(parent)).toEqual(first)
    } finally {
      await rm(parent, { recursive: true, force: true })
    }
  })

  it("freeEncapsulationPort returns a port below the ephemeral range, free on 0.0.0.0 and on ::", async () => {
    const port = await Usrsctp.freeEncapsulationPort()
    expect(port).toBeGreaterThan(0)
    expect(port).toBeLessThan(ephemeralStart())
    expect(await bindsOn("udp4", "0.0.0.0", port)).toBe(true)
    expect(await bindsOn("udp6", "::", port)).toBe(true)
  })

  it("freeEncapsulationPorts returns distinct ports below the ephemeral range, each free on 0.0.0.0 and on ::", async () => {
    const ports = await Usrsctp.freeEncapsulationPorts(3)
    expect(new Set(ports).size).toBe(3)
    for (const port of ports) {
      expect(port).toBeLessThan(ephemeralStart())
      expect(await bindsOn("udp4", "0.0.0.0", port)).toBe(true)
      expect(await bindsOn("udp6", "::", port)).toBe(true)
    }
  })
})

describe("usrsctp harness: tsctp", () => {
  it("tsctp sender → tsctp receiver on loopback: every message arrives and both summaries parse", async () => {
    const receiverPort = await Usrsctp.freeEncapsulationPort()
    const receiver = await Usrsctp.startTsctp({
      role: "receiver",
      localEncapsPort: receiverPort,
      nodebug: true,
    })
    const senderPort = await Usrsctp.freeEncapsulationPort()
    const sender = await Usrsctp.startTsctp({
      role: "sender",
      host: "127.0.0.1",
      localEncapsPort: senderPort,
      remoteEncapsPort: receiverPort,
      messageLength: 1024,
      messages: 2000,
      nodebug: true,
    })
    await receiver.waitFor(Usrsctp.tsctpReceiverLinePattern, 20_000)
    const [result, ...more] = Usrsctp.parseTsctpReceiver(receiver.stdout())
    expect(more).toEqual([])
    expect(result?.messageLength).toBe(1024)
    expect(result?.messages).toBe(2000)
    expect(result?.bytes).toBe(2000 * 1024)
    expect(result?.seconds).toBeGreaterThan(0)
    expect(result?.bytesPerSecond).toBeCloseTo((2000 * 1024) / (result?.seconds ?? 1), -3)

    // The sender prints its summary, then exits once the association is shut down.
    const exit = await sender.exited
    expect(exit).toEqual({ code: 0, signal: null })
    const sent = Usrsctp.parseTsctpSender(sender.stdout())
    expect(sent).toMatchObject({ messages: 2000, messageLength: 1024 })
    expect(sent?.seconds).toBeGreaterThan(0)
  })

  it("parses tsctp's receiver lines and sender summary from their exact formats", () => {
    const output =
      "Connection accepted from 127.0.0.1:40112\n" +
      "1024, 20000, 20000, 20480000, 0.314239, 65173323.489446, 0\n" +
      "8192, 3, 9, 24576, 0.001000, 24576000.000000, 1\n"
    expect(Usrsctp.parseTsctpReceiver(output)).toEqual([
      {
        messageLength: 1024,
        messages: 20000,
        receiveCalls: 20000,
        bytes: 20480000,
        seconds: 0.314239,
        bytesPerSecond: 65173323.489446,
        notifications: 0,
      },
      {
        messageLength: 8192,
        messages: 3,
        receiveCalls: 9,
        bytes: 24576,
        seconds: 0.001,
        bytesPerSecond: 24576000,
        notifications: 1,
      },
    ])
    expect(Usrsctp.parseTsctpReceiver("1024, 20000, 20000\n")).toEqual([])
    expect(
      Usrsctp.parseTsctpSender(
        "Sending of 20000 messages of length 1024 took 0.312497 seconds.\nThroughput was 65536629.151640 Byte/sec.\n",
      ),
    ).toEqual({
      messages: 20000,
      messageLength: 1024,
      seconds: 0.312497,
      bytesPerSecond: 65536629.15164,
    })
    expect(
      Usrsctp.parseTsctpSender("Sending of 20000 messages of length 1024 took 0.3 seconds.\n"),
    ).toBe(undefined)
  })

  it("builds tsctp's command lines", () => {
    expect(Usrsctp.tsctpArguments({ role: "receiver", localEncapsPort: 4000 })).toEqual([
      "-E",
      "4000",
      "-p",
      "5001",
    ])
    expect(
      Usrsctp.tsctpArguments({
        role: "sender",
        host: "127.0.0.1",
        port: 6000,
        localEncapsPort: 4001,
        remoteEncapsPort: 4000,
        messageLength: 8192,
        messages: 10,
        unordered: true,
      }),
    ).toEqual([
      "-E",
      "4001",
      "-p",
      "6000",
      "-U",
      "4000",
      "-l",
      "8192",
      "-n",
      "10",
      "-u",
      "127.0.0.1",
    ])
  })
})

describe("usrsctp harness: client and echo_server", () => {
  it("the client's line comes back from echo_server, and its notifications arrive line by line", async () => {
    const serverPort = await Usrsctp.freeEncapsulationPort()
    const server = await Usrsctp.startEchoServer({ localEncapsPort: serverPort })
    const clientPort = await Usrsctp.freeEncapsulationPort()
    const client = await Usrsctp.startClient({
      host: "127.0.0.1",
      port: Usrsctp.echoServerSctpPort,
      localEncapsPort: clientPort,
      remoteEncapsPort: serverPort,
    })
    // Line-buffered stdout: the COMM_UP notification shows while the client still runs.
    await client.waitFor(/Association change SCTP_COMM_UP/, 10_000)
    client.write("numbered line 1\n")
    await client.waitFor(/^numbered line 1$/m, 10_000)
    await server.waitFor(/Msg of length 16 received from/, 10_000)
    client.endInput()
    await client.waitFor(/SCTP_SHUTDOWN_COMP/, 10_000)
    expect((await client.exited).code).toBe(0)
    expect(client.stdout().match(/^numbered line 1$/gm)).toHaveLength(1)
  })
})

describe("usrsctp harness: shims", () => {
  // Counts the client's INITs reaching a UDP socket of ours (nobody answers them) for 2.5 s.
  const countInits = async (tune?: Partial<Record<Usrsctp.TuneName, number>>) => {
    const recorder = await Usrsctp.recordUdp("127.0.0.1")
    try {
      const client = await Usrsctp.startClient({
        host: "127.0.0.1",
        port: Usrsctp.echoServerSctpPort,
        localEncapsPort: await Usrsctp.freeEncapsulationPort(),
        remoteEncapsPort: recorder.port,
        ...(tune === undefined ? {} : { tune }),
      })
      // The window starts at the first INIT, so process start-up does not count.
      for (let waited = 0; waited < 5_000 && recorder.received().length === 0; waited += 20)
        await sleep(20)
      expect(recorder.received().length).toBeGreaterThan(0)
      await sleep(2_500)
      const first = recorder.received()[0]?.atMs ?? 0
      const inWindow = recorder.received().filter((datagram) => datagram.atMs - first < 2_500)
      return { count: inWindow.length, stderr: client.stderr() }
    } finally {
      await recorder.close()
    }
  }

  it("tune.so: a 200 ms initial RTO makes INITs retransmit within a window the 3 s default leaves empty", async () => {
    const [tuned, standard] = await Promise.all([
      countInits({ rto_initial_default: 200, rto_min_default: 100 }),
      countInits(),
    ])
    expect(tuned.stderr).toContain("[tune] rto_initial_default=200 rc=0")
    expect(tuned.stderr).toContain("[tune] rto_min_default=100 rc=0")
    // 0, 0.2, 0.6, 1.4 s (doubling from 200 ms): four; with the default RTO of 3 s: one.
    expect(tuned.count).toBeGreaterThanOrEqual(3)
    expect(standard.count).toBe(1)
    expect(standard.stderr).not.toContain("[tune]")
  })

  it("nodebug.so: tsctp prints its debug log without it and nothing with it", async () => {
    const noisy = await Usrsctp.startTsctp({
      role: "receiver",
      localEncapsPort: await Usrsctp.freeEncapsulationPort(),
    })
    const quiet = await Usrsctp.startTsctp({
      role: "receiver",
      localEncapsPort: await Usrsctp.freeEncapsulationPort(),
      nodebug: true,
    })
    await noisy.waitFor(/^\[S\]\[\d+\.\d+\] /m, 5_000)
    // Both have listened for the same time by now (startTsctp waits until each is bound).
    expect(quiet.output()).not.toMatch(/\[S\]\[/)
    expect(quiet.output()).toBe("")
  })

  it("killAll SIGKILLs every program and waits for it", async () => {
    const server = await Usrsctp.startEchoServer({
      localEncapsPort: await Usrsctp.freeEncapsulationPort(),
    })
    expect(Usrsctp.runningCount()).toBe(1)
    await Usrsctp.killAll()
    expect(await server.exited).toEqual({ code: null, signal: "SIGKILL" })
    expect(Usrsctp.runningCount()).toBe(0)
  })
})
