// @understudy/multihome: two SCTP endpoints over UDP on loopback; one echoes a message.
import { createEndpoint } from "@understudy/multihome"

// The endpoints' own log lines (associations opened and closed) go elsewhere: stdout is the result.
const logger = () => {}
const server = await createEndpoint({ host: "127.0.0.1", port: 5000, listen: true, logger })
server.on("association", (association) =>
  association.on("message", (m) => association.send(m.stream, m.ppid, m.data)),
)
const client = await createEndpoint({ host: "127.0.0.1", port: 5001, logger })
const association = await client.connect({
  host: "127.0.0.1",
  udpPort: server.address.port,
  port: 5000,
})
const echoed = new Promise((resolve) =>
  association.on("message", (m) => resolve(new TextDecoder().decode(m.data))),
)
await association.send(0, 51, new TextEncoder().encode("hello"))
const reply = await echoed
await association.shutdown()
await client.close()
await server.close()
console.log(JSON.stringify({ reply }))
