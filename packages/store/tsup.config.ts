import { defineConfig } from "tsup"

export default defineConfig({
  entry: ["src/index.ts", "src/etcd.ts"],
  format: ["esm", "cjs"],
  dts: true,
  sourcemap: true,
  clean: true,
  // The published packages support both Node LTS lines, 22 and 24.
  target: "node22",
  // import.meta.url in the CommonJS build (the etcd entry loads etcd3 through createRequire).
  shims: true,
})
