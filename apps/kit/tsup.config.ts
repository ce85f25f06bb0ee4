import { defineConfig } from "tsup"

export default defineConfig({
  entry: ["src/index.ts"],
  format: ["esm", "cjs"],
  dts: true,
  sourcemap: true,
  clean: true,
  target: "node24",
  // import.meta.url in the CommonJS build (Usrsctp finds its native/ sources by it).
  shims: true,
})
