/**
 * Reading a program's metrics as a scrape would: `scrape` fetches its Prometheus text
 * (`--metrics HOST:PORT` serves it at `/metrics`), `sample` reads one series of it.
 *
 * @since 0.1.0
 */

/**
 * The Prometheus text at `url`; throws unless it answers 200 within `timeoutMs`.
 *
 * @since 0.1.0
 * @category scraping
 */
export const scrape = async (url: string, timeoutMs = 5_000): Promise<string> => {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
  const text = await response.text()
  if (response.status !== 200) throw new Error(`${url}: ${response.status} ${text.slice(0, 200)}`)
  return text
}

/**
 * The value of one series (`name{labels}` exactly as written, labels in the program's order)
 * in Prometheus text, or `undefined` if it is absent.
 *
 * @since 0.1.0
 * @category scraping
 */
export const sample = (text: string, series: string): number | undefined => {
  for (const line of text.split("\n")) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1))
  }
  return undefined
}
