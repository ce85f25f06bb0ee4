// @understudy/staggered-election: the election delay of each backup after the master failed.
import { Delays } from "@understudy/staggered-election"

const servers = ["n1", "n2", "n3"].map((id, index) => ({
  id,
  index,
  capacity: { cpu: 3 - index, bandwidthMbps: 100 },
}))
const matrix = { n2: { n3: 7 }, n3: { n2: 5 } }
const delay = (self) =>
  Delays.electionDelay({
    servers,
    self,
    failed: "n1",
    matrix,
    baseDelayMs: 50,
    floorDelayMs: 1,
    unknownDelayMs: 100,
  })
console.log(JSON.stringify({ n2: delay("n2"), n3: delay("n3") }))
