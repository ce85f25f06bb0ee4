/**
 * The packets a local attacker sends at an endpoint (test support, not part of the package's
 * API): INITs that list an address of its choosing, and packets for a live association with
 * a guessed verification tag. Used by the endpoint's adversary test and by `sctp-cluster`'s
 * flood process. Tags, TSNs and guesses come from `node:crypto`, as an attacker's would.
 */
import { randomInt } from "node:crypto"
import * as Packet from "../../src/Packet.ts"

/** An INIT from `sourcePort` listing 10.6.6.6: where the attacker wants answers to go. */
export const forgedInit = (sourcePort: number, destinationPort: number): Uint8Array =>
  Packet.encode({
    sourcePort,
    destinationPort,
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

/** A packet for an association with a guessed tag: an ABORT (even `index`), or DATA. */
export const forgedGuess = (
  sourcePort: number,
  destinationPort: number,
  index: number,
): Uint8Array =>
  Packet.encode({
    sourcePort,
    destinationPort,
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
