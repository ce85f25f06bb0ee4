#!/usr/bin/env node
// The `license-server` command: runs the app from its TypeScript sources, whose types Node strips
// itself (Node 22.18 and later; `npm install` in the repository brings Node 24, which npx uses).
const [major, minor] = process.versions.node.split(".").map(Number)
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(
    `license-server needs Node 22.18 or later (it runs TypeScript sources); this is Node ${process.versions.node}. Run it as \`npx license-server\` in the repository.\n`,
  )
  process.exit(1)
}
await import("../src/server.ts")
