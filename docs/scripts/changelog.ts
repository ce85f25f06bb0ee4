/**
 * Writes changelog.md from the released notes (each package's CHANGELOG.md, written by
 * `changeset version`) and the changes not yet released (.changeset/*.md), so the site's
 * changelog is never edited by hand.
 *
 *   node scripts/changelog.ts    (run by `npm run build`)
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"

const root = join(import.meta.dirname, "..", "..")

/** A changeset: front matter of `"package": bump` lines, then the summary. */
export const parseChangeset = (text: string) => {
  const match = /^---\n([\s\S]*?)\n---\n?([\s\S]*)$/.exec(text)
  if (match === null) return undefined
  const packages = [...match[1]!.matchAll(/^\s*["']?([^"':]+)["']?\s*:\s*(major|minor|patch)/gm)]
  return {
    packages: packages.map((entry) => ({ name: entry[1]!, bump: entry[2]! })),
    summary: match[2]!.trim(),
  }
}

/** A package's CHANGELOG.md with its first heading (the package name) dropped. */
const released = (path: string) =>
  readFileSync(path, "utf8")
    .replace(/^# .*\n/, "")
    .replace(/^## /gm, "### ")
    .trim()

export const render = (repository: string) => {
  const lines = [
    "# Changelog",
    "",
    "Generated from the repository's changesets: each package's released notes, and the",
    "changes that will go into its next release.",
    "",
  ]
  const pendingDirectory = join(repository, ".changeset")
  const pending = existsSync(pendingDirectory)
    ? readdirSync(pendingDirectory)
        .filter((file) => file.endsWith(".md") && file !== "README.md")
        .sort()
        .flatMap((file) => parseChangeset(readFileSync(join(pendingDirectory, file), "utf8")) ?? [])
    : []
  lines.push("## Not yet released", "")
  if (pending.length === 0) lines.push("Nothing: every change so far is in a release.", "")
  for (const change of pending) {
    const names = change.packages.map((p) => `\`${p.name}\` (${p.bump})`).join(", ")
    lines.push(`- ${names}: ${change.summary.replace(/\n+/g, " ")}`)
  }
  if (pending.length > 0) lines.push("")
  const packages = readdirSync(join(repository, "packages")).sort()
  for (const name of packages) {
    const path = join(repository, "packages", name, "CHANGELOG.md")
    if (!existsSync(path)) continue
    lines.push(`## @understudy/${name}`, "", released(path), "")
  }
  return lines.join("\n")
}

if (import.meta.main) {
  writeFileSync(join(import.meta.dirname, "..", "changelog.md"), render(root))
}
