/**
 * Addresses of stream and datagram endpoints, written as URLs:
 * `tcp://127.0.0.1:7000`, `tcp://[::1]:7000`, `unix:///run/app.sock`, `unix://@name`
 * (a Linux abstract socket: no file, freed by the kernel when its owner dies) and
 * `udp://127.0.0.2:9000`.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/** @since 0.1.0 @category models */
export interface Tcp {
  readonly _tag: "Tcp"
  readonly host: string
  readonly port: number
}

/** @since 0.1.0 @category models */
export interface Unix {
  readonly _tag: "Unix"
  /** A file system path, or for an abstract socket the name after `@`. */
  readonly path: string
  readonly abstract: boolean
}

/** @since 0.1.0 @category models */
export interface Udp {
  readonly _tag: "Udp"
  readonly host: string
  readonly port: number
}

/** An address a stream `Transport` can listen on or connect to. @since 0.1.0 @category models */
export type StreamAddress = Tcp | Unix

/** Any address Understudy understands. @since 0.1.0 @category models */
export type Address = Tcp | Unix | Udp

/**
 * The address string could not be parsed, or names the wrong kind of endpoint.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidAddress extends Schema.TaggedError<InvalidAddress>()("InvalidAddress", {
  input: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `invalid address ${JSON.stringify(this.input)}: ${this.reason}`
  }
}

/** @since 0.1.0 @category constructors */
export const tcp = (host: string, port: number): Tcp => ({ _tag: "Tcp", host, port })

/** @since 0.1.0 @category constructors */
export const unix = (path: string): Unix => ({ _tag: "Unix", path, abstract: false })

/** @since 0.1.0 @category constructors */
export const abstract = (name: string): Unix => ({ _tag: "Unix", path: name, abstract: true })

/** @since 0.1.0 @category constructors */
export const udp = (host: string, port: number): Udp => ({ _tag: "Udp", host, port })

const maxUnixPathBytes = 107

const parseHostPort = (
  input: string,
  rest: string,
): { readonly host: string; readonly port: number } | InvalidAddress => {
  const bracketed = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(rest)
  const plain = /^([^:[\]/]+):(\d+)$/.exec(rest)
  const match = bracketed ?? plain
  if (match === null) {
    return new InvalidAddress({ input, reason: "expected host:port (IPv6 hosts in brackets)" })
  }
  const port = Number(match[2])
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    return new InvalidAddress({ input, reason: "port must be an integer from 0 to 65535" })
  }
  return { host: match[1]!, port }
}

/**
 * Parses an address URL. Fails with `InvalidAddress` for anything else.
 *
 * @example
 * ```ts
 * import { Address } from "@understudy/transport"
 * Address.parse("tcp://[::1]:7000") // Tcp { host: "::1", port: 7000 }
 * ```
 * @since 0.1.0
 * @category parsing
 */
export const parse = (input: string): Address | InvalidAddress => {
  const scheme = /^([a-z]+):\/\/(.*)$/.exec(input)
  if (scheme === null) return new InvalidAddress({ input, reason: "expected scheme://..." })
  const rest = scheme[2]!
  switch (scheme[1]) {
    case "tcp":
    case "udp": {
      const hostPort = parseHostPort(input, rest)
      if (hostPort instanceof InvalidAddress) return hostPort
      return scheme[1] === "tcp"
        ? tcp(hostPort.host, hostPort.port)
        : udp(hostPort.host, hostPort.port)
    }
    case "unix": {
      const isAbstract = rest.startsWith("@")
      const path = isAbstract ? rest.slice(1) : rest
      if (path.length === 0) return new InvalidAddress({ input, reason: "empty socket path" })
      if (!isAbstract && !path.startsWith("/")) {
        return new InvalidAddress({ input, reason: "unix socket paths are absolute" })
      }
      if (Buffer.byteLength(path) > maxUnixPathBytes) {
        return new InvalidAddress({ input, reason: `longer than ${maxUnixPathBytes} bytes` })
      }
      return isAbstract ? abstract(path) : unix(path)
    }
    default:
      return new InvalidAddress({ input, reason: `unknown scheme ${scheme[1]}` })
  }
}

/** Parses a `tcp://` or `unix://` address. @since 0.1.0 @category parsing */
export const parseStream = (input: string): StreamAddress | InvalidAddress => {
  const address = parse(input)
  if (address instanceof InvalidAddress || address._tag !== "Udp") return address
  return new InvalidAddress({ input, reason: "expected a tcp:// or unix:// address" })
}

/** Parses a `udp://` address. @since 0.1.0 @category parsing */
export const parseDatagram = (input: string): Udp | InvalidAddress => {
  const address = parse(input)
  if (address instanceof InvalidAddress || address._tag === "Udp") return address
  return new InvalidAddress({ input, reason: "expected a udp:// address" })
}

/**
 * Formats an address as its URL; `parse(format(a))` gives back `a`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const format = (address: Address): string => {
  switch (address._tag) {
    case "Tcp":
    case "Udp": {
      const host = address.host.includes(":") ? `[${address.host}]` : address.host
      return `${address._tag === "Tcp" ? "tcp" : "udp"}://${host}:${address.port}`
    }
    case "Unix":
      return address.abstract ? `unix://@${address.path}` : `unix://${address.path}`
  }
}
