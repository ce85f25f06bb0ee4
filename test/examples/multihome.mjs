// @understudy/multihome: two SCTP endpoints over UDP on loopback; one echoes a message.
import { Facade } from "@understudy/multihome"

const server = await Facade.open({ host: "127.0.0.1", port: 5000, listen: true })
server.on("association", (association) =>
  association.on("message", (m) => association.send(m.stream, m.ppid, m.data)),
)
const client = await Facade.open({ host: "127.0.0.1", port: 5001 })
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
