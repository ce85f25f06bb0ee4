/**
 * The built site (docs/dist, from `npm run build`) in headless Chromium (Debian's
 * `chromium`, installed by scripts/ensure-system-deps.sh), served by a static file server on
 * a free loopback port: every page loads without a console error, every internal link
 * resolves, each sequence diagram (drawn by scripts/diagrams.ts) is an SVG showing its
 * participants, search finds each package's guide, the plots render.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { extname, join, normalize, relative } from "node:path"
import { type Browser, chromium, type Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { names, participants, sourceDir } from "../scripts/diagrams.ts"

const dist = join(import.meta.dirname, "..", "dist")
const chromiumPath = "/usr/bin/chromium"

const types: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".css": "text/css",
  ".svg": "image/svg+xml",
  ".json": "application/json",
  ".woff2": "font/woff2",
  ".png": "image/png",
}

/** Serves dist/ as a static host would (no clean URLs: links end in .html). */
const serve = () =>
  new Promise<Server>((resolve) => {
    const server = createServer((request, response) => {
      const path = decodeURIComponent(new URL(request.url ?? "/", "http://x").pathname)
      let file = normalize(join(dist, path))
      if (!file.startsWith(dist)) {
        response.writeHead(403).end()
        return
      }
      if (existsSync(file) && statSync(file).isDirectory()) file = join(file, "index.html")
      if (!existsSync(file)) {
        response.writeHead(404).end()
        return
      }
      response.writeHead(200, {
        "content-type": types[extname(file)] ?? "application/octet-stream",
      })
      response.end(readFileSync(file))
    })
    server.listen(0, "127.0.0.1", () => resolve(server))
  })

/** The site's own pages (the API reference is TypeDoc's: checked through the links to it). */
const pages = () =>
  readdirSync(dist)
    .filter((file) => file.endsWith(".html") && file !== "404.html")
    .map((file) => `/${file}`)
    .sort()

let server: Server
let browser: Browser
let origin = ""

beforeAll(async () => {
  if (!existsSync(join(dist, "index.html"))) {
    throw new Error("docs/dist is missing: build the site first (npm run docs:build)")
  }
  if (!existsSync(chromiumPath)) {
    throw new Error("chromium is missing: bash scripts/ensure-system-deps.sh chromium")
  }
  server = await serve()
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] })
}, 60_000)

afterAll(async () => {
  await browser?.close()
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)))
})

const open = async (path: string) => {
  const page = await browser.newPage()
  const errors: Array<string> = []
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text())
  })
  page.on("pageerror", (error) => errors.push(error.message))
  page.on("response", (response) => {
    if (response.status() >= 400) errors.push(`${response.status()} ${response.url()}`)
  })
  const response = await page.goto(`${origin}${path}`, { waitUntil: "load" })
  return { page, errors, status: response?.status() }
}

const withPage = async <A>(path: string, use: (page: Page) => Promise<A>) => {
  const { page } = await open(path)
  try {
    return await use(page)
  } finally {
    await page.close()
  }
}

interface Drawn {
  readonly width: number
  readonly root: string
  readonly parseErrors: number
  readonly texts: ReadonlyArray<string>
}

/** The page's picture of diagram `name`: decoded, and its SVG parsed as the browser does. */
const diagramOn = (page: Page, name: string) =>
  page.evaluate(
    `(async () => {
      const image = document.querySelector('img[src*="/diagrams/${name}.svg"]')
      if (image === null) return undefined
      await image.decode()
      const text = await (await fetch(image.src)).text()
      const svg = new DOMParser().parseFromString(text, "image/svg+xml")
      return {
        width: image.naturalWidth,
        root: svg.documentElement.localName,
        parseErrors: svg.getElementsByTagName("parsererror").length,
        texts: [...svg.querySelectorAll("text")].map((node) => node.textContent),
      }
    })()`,
  ) as Promise<Drawn | undefined>

/** An SVG that shows every participant of its source, and no syntax error. */
const expectDiagram = (name: string, drawn: Drawn | undefined) => {
  const expected = participants(readFileSync(join(sourceDir, `${name}.mmd`), "utf8"))
  expect(drawn, name).toBeDefined()
  expect({ name, root: drawn!.root, parseErrors: drawn!.parseErrors }).toEqual({
    name,
    root: "svg",
    parseErrors: 0,
  })
  expect(drawn!.width).toBeGreaterThan(0)
  for (const label of expected) expect(drawn!.texts).toContain(label)
  expect(drawn!.texts.join(" ")).not.toMatch(/syntax error/i)
}

describe("the documentation site in Chromium", () => {
  it("has every page of the guide", () => {
    const found = pages()
    for (const page of [
      "/index.html",
      "/getting-started.html",
      "/architecture.html",
      "/port-election.html",
      "/staggered-election.html",
      "/heartbeat-pool.html",
      "/checkpoint.html",
      "/multihome.html",
      "/transport.html",
      "/store.html",
      "/machine.html",
      "/tuning.html",
      "/deployment.html",
      "/observability.html",
      "/limits.html",
      "/benchmarks.html",
      "/changelog.html",
    ]) {
      expect(found).toContain(page)
    }
    expect(existsSync(join(dist, "api", "index.html"))).toBe(true)
  })

  it("loads every page without a console error, every internal link resolves, each diagram is an SVG with its participants", async () => {
    const links = new Set<string>()
    const diagrams = new Set(names())
    const drawn = new Map<string, Drawn | undefined>()
    for (const path of pages()) {
      const { page, errors, status } = await open(path)
      // The page is hydrated by Vue once the app's root has content.
      await page.waitForSelector("#app .VPContent", { timeout: 20_000 })
      // Evaluated in the page (this file is compiled without the DOM's types).
      const hrefs = (await page.evaluate(
        `[...document.querySelectorAll("a[href]")].map((anchor) => anchor.href)`,
      )) as ReadonlyArray<string>
      // A guide shows its failover's diagram (drawn by scripts/diagrams.ts).
      const name = path.slice(1, -".html".length)
      if (diagrams.has(name)) drawn.set(name, await diagramOn(page, name))
      await page.close()
      expect({ path, status, errors }).toEqual({ path, status: 200, errors: [] })
      for (const href of hrefs) if (href.startsWith(origin)) links.add(href.split("#")[0]!)
    }
    expect([...drawn.keys()].sort()).toEqual([...diagrams].sort())
    for (const [name, picture] of drawn) expectDiagram(name, picture)
    expect(links.size).toBeGreaterThan(20)
    const broken: Array<string> = []
    for (const link of links) {
      const response = await fetch(link)
      if (response.status !== 200) broken.push(`${relative(origin, link)}: ${response.status}`)
    }
    expect(broken).toEqual([])
  }, 240_000)

  it("search finds each package's guide", async () => {
    await withPage("/index.html", async (page) => {
      await page.waitForSelector("#app .VPContent", { timeout: 20_000 })
      for (const [query, guide] of [
        ["port election", "/port-election.html"],
        ["staggered election", "/staggered-election.html"],
        ["heartbeat pool", "/heartbeat-pool.html"],
        ["checkpoint", "/checkpoint.html"],
        ["multihome", "/multihome.html"],
        ["transport", "/transport.html"],
        ["store", "/store.html"],
        ["machine", "/machine.html"],
      ] as const) {
        await page.click(".VPNavBarSearch button")
        const input = await page.waitForSelector(".VPLocalSearchBox input", { timeout: 20_000 })
        await input.fill(query)
        const result = await page.waitForSelector(`.VPLocalSearchBox a.result[href*="${guide}"]`, {
          timeout: 20_000,
        })
        expect(await result.getAttribute("href")).toContain(guide)
        await page.keyboard.press("Escape")
        await page.waitForSelector(".VPLocalSearchBox", { state: "detached", timeout: 20_000 })
      }
    })
  }, 120_000)

  it("renders the benchmark plots", async () => {
    await withPage("/benchmarks.html", async (page) => {
      await page.waitForSelector("#app .VPContent", { timeout: 20_000 })
      const images = (await page.evaluate(
        `Promise.all([...document.querySelectorAll('img[src*="/plots/"]')].map(async (image) => {
          await image.decode()
          return { src: image.getAttribute("src"), width: image.naturalWidth }
        }))`,
      )) as ReadonlyArray<{ readonly src: string; readonly width: number }>
      expect(images.length).toBeGreaterThanOrEqual(3)
      for (const image of images) expect(image.width).toBeGreaterThan(0)
    })
  }, 60_000)
})
