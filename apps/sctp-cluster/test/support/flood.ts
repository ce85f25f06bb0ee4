/**
 * Another local process attacking a cluster node (`node flood.ts HOST UDP_PORT SCTP_PORT
 * COUNT`): COUNT INITs from many UDP source ports, each listing an address of the attacker's
 * choosing, and COUNT packets with guessed verification tags (ABORTs and DATA) aimed at the
 * association on SCTP_PORT. Prints one JSON line `{"t":"flooded","sent":N}` and exits.
 */
import { randomInt } from "node:crypto"
import { createSocket } from "node:dgram"
import { setTimeout as sleep } from "node:timers/promises"
// The builders the endpoint's own adversary test uses.
import { forgedGuess, forgedInit } from "../../../../packages/multihome/test/support/forged.ts"

const [host, udpPortText, sctpPortText, countText] = process.argv.slice(2)
const udpPort = Number(udpPortText)
const sctpPort = Number(sctpPortText)
const count = Number(countText)

// A few sockets, so INITs come from several UDP ports; sends are paced in small bursts.
const sockets = Array.from({ length: 8 }, () => createSocket("udp4"))
let sent = 0
for (let index = 0; index < count; index++) {
  const socket = sockets[index % sockets.length]!
  await new Promise<void>((resolve) =>
    socket.send(forgedInit(40_000 + index, sctpPort), udpPort, host, () => resolve()),
  )
  // The usrsctp client's SCTP port is unknown to us: guess it as an attacker would.
  await new Promise<void>((resolve) =>
    socket.send(forgedGuess(randomInt(1, 65_535), sctpPort, index), udpPort, host, () => resolve()),
  )
  sent += 2
  if (index % 10 === 9) await sleep(5)
}
for (const socket of sockets) socket.close()
process.stdout.write(`${JSON.stringify({ t: "flooded", sent })}\n`)
