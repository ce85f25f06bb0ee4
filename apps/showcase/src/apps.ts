/**
 * The apps the showcase runs, found as their packages declare them: each command's file
 * from the `bin` of its package.json (a dependency of the showcase), never a path into
 * another app's sources.
 *
 * @since 0.1.0
 */
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"

const require = createRequire(import.meta.url)

/**
 * The file of command `bin` of package `name`, to run as `node <file> ...args`.
 *
 * @since 0.1.0
 */
export const commandPath = (name: string, bin: string): string => {
  const manifest = require.resolve(`${name}/package.json`)
  const bins = (JSON.parse(readFileSync(manifest, "utf8")) as { bin?: Record<string, string> }).bin
  const file = bins?.[bin]
  if (file === undefined) throw new Error(`${name} has no command ${bin}`)
  return join(dirname(manifest), file)
}
