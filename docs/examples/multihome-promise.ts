/**
 * Multihome guide, Promise style: an SCTP endpoint on 127.0.0.4 that answers every message
 * in upper case, and a client endpoint on 127.0.0.5 that connects, sends three messages,
 * reads the answers and shuts the association down gracefully. (The two-node cluster of
 * sctp-cluster.ts has 127.0.0.2 and 127.0.0.3: each example its own addresses.)
 */
import { once } from "node:events"
import { createEndpoint, type Endpoint, type SctpAssociation } from "@understudy/multihome"

export const main = async () => {
  const server = await createEndpoint({ host: "127.0.0.4", port: 7, listen: true })
  server.on("association", (association: SctpAssociation) => {
    association.on("message", (message: Endpoint.Message) => {
      const text = new TextDecoder().decode(message.data).toUpperCase()
      void association.send(message.stream, message.ppid, new TextEncoder().encode(text))
    })
  })
  const client = await createEndpoint({ host: "127.0.0.5", port: 5000 })
  const association = await client.connect({
    host: "127.0.0.4",
    udpPort: server.address.port,
    port: 7,
  })
  const answers: Array<string> = []
  association.on("message", (message: Endpoint.Message) => {
    answers.push(new TextDecoder().decode(message.data))
    if (answers.length === 3) association.emit("answered")
  })
  const answered = once(association, "answered", { signal: AbortSignal.timeout(20_000) })
  for (const text of ["one", "two", "three"]) {
    await association.send(0, 0, new TextEncoder().encode(text))
  }
  await answered
  await association.shutdown()
  const closed = await association.closed
  await client.close()
  await server.close()
  return { answers, closed: closed._tag }
}

if (import.meta.main) {
  main().then((result) => console.log(result))
}
