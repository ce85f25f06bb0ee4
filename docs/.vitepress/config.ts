import { defineConfig } from "vitepress"

const guides = [
  { text: "Port election", link: "/port-election" },
  { text: "Staggered election", link: "/staggered-election" },
  { text: "Heartbeat pool", link: "/heartbeat-pool" },
  { text: "Checkpoint", link: "/checkpoint" },
  { text: "Multihome (SCTP)", link: "/multihome" },
  { text: "Transport", link: "/transport" },
  { text: "Store", link: "/store" },
  { text: "Machine", link: "/machine" },
]

// Static output in dist/ (turbo caches it like every package's build); local search, so the
// site works offline and the browser test needs no network.
export default defineConfig({
  title: "Understudy",
  description: "Distributed coordination and failover for Node.js, on Effect",
  outDir: "dist",
  // No favicon of our own: say so, rather than let every browser ask for /favicon.ico.
  head: [["link", { rel: "icon", href: "data:," }]],
  cleanUrls: false,
  srcExclude: ["README.md", "node_modules/**", "test/**", "examples/**", "scripts/**"],
  // The API reference is TypeDoc's own HTML under public/api, outside VitePress's pages.
  ignoreDeadLinks: [/^\/api\//],
  themeConfig: {
    nav: [
      { text: "Guide", link: "/getting-started" },
      { text: "API", link: "/api/index.html", target: "_self" },
      { text: "Changelog", link: "/changelog" },
    ],
    sidebar: [
      {
        text: "Introduction",
        items: [
          { text: "What Understudy is", link: "/" },
          { text: "Getting started", link: "/getting-started" },
          { text: "Architecture", link: "/architecture" },
        ],
      },
      { text: "Guides", items: guides },
      {
        text: "Operating",
        items: [
          { text: "Tuning", link: "/tuning" },
          { text: "Deployment", link: "/deployment" },
          { text: "Observability", link: "/observability" },
          { text: "Limits", link: "/limits" },
          { text: "Benchmarks", link: "/benchmarks" },
        ],
      },
      {
        text: "Reference",
        items: [
          { text: "API reference", link: "/api/index.html", target: "_self" },
          { text: "Changelog", link: "/changelog" },
        ],
      },
    ],
    search: { provider: "local" },
  },
})
