import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import * as Address from "../src/Address.ts"

const port = fc.integer({ min: 0, max: 65535 })
const ipv4 = fc.ipV4()
const ipv6 = fc.ipV6()
const hostname = fc.domain()
const host = fc.oneof(ipv4, ipv6, hostname)
// A path component: no "/" and no line break (the URL pattern is one line).
const segment = fc
  .string({ unit: "grapheme", minLength: 1, maxLength: 12 })
  .filter((s) => !/[/\n\r\u2028\u2029]/.test(s))
const unixPath = fc
  .array(segment, { minLength: 1, maxLength: 6 })
  .map((segments) => `/${segments.join("/")}`)
  .filter((path) => Buffer.byteLength(path) <= 107)
const abstractName = fc
  .string({ unit: "grapheme", minLength: 1, maxLength: 40 })
  .filter((name) => !/[\n\r\u2028\u2029]/.test(name) && Buffer.byteLength(name) <= 107)

const address: fc.Arbitrary<Address.Address> = fc.oneof(
  fc.tuple(host, port).map(([h, p]) => Address.tcp(h, p)),
  fc.tuple(host, port).map(([h, p]) => Address.udp(h, p)),
  unixPath.map(Address.unix),
  abstractName.map(Address.abstract),
)

/** Strings near the grammar, where parsers go wrong, and arbitrary ones. */
const addressLike = fc.oneof(
  fc.string({ unit: "binary", maxLength: 60 }),
  fc
    .tuple(
      fc.constantFrom("tcp", "udp", "unix", "http", "TCP", "", "tcp:", "unix:/"),
      fc.constantFrom("://", ":/", "//", ":///", "://@"),
      fc.string({ unit: fc.constantFrom(..."[]:./@0123456789abcdef-%"), maxLength: 30 }),
    )
    .map(([scheme, sep, rest]) => `${scheme}${sep}${rest}`),
  address
    .map(Address.format)
    .chain((text) =>
      fc
        .tuple(fc.nat(text.length), fc.string({ maxLength: 3 }))
        .map(([at, noise]) => text.slice(0, at) + noise + text.slice(at)),
    ),
)

const parseTotal = (input: string): Address.Address | Address.InvalidAddress => {
  let result: Address.Address | Address.InvalidAddress | undefined
  expect(() => {
    result = Address.parse(input)
  }).not.toThrow()
  return result!
}

const invalid = (input: string): Address.InvalidAddress => {
  const result = parseTotal(input)
  if (!(result instanceof Address.InvalidAddress))
    throw new Error(`${input} parsed as ${JSON.stringify(result)}`)
  expect(result.input).toBe(input)
  expect(result.message).toContain(JSON.stringify(input))
  return result
}

describe("Address", () => {
  it("parse(format(a)) gives back a, for tcp and udp over IPv4, IPv6 and names, unix paths and abstract names", () => {
    fc.assert(
      fc.property(address, (a) => {
        expect(parseTotal(Address.format(a))).toEqual(a)
      }),
      { numRuns: 500 },
    )
  })

  it("formats as the documented URLs", () => {
    expect(Address.format(Address.tcp("127.0.0.1", 7000))).toBe("tcp://127.0.0.1:7000")
    expect(Address.format(Address.tcp("::1", 7000))).toBe("tcp://[::1]:7000")
    expect(Address.format(Address.udp("127.0.0.2", 9000))).toBe("udp://127.0.0.2:9000")
    expect(Address.format(Address.unix("/run/app.sock"))).toBe("unix:///run/app.sock")
    expect(Address.format(Address.abstract("name"))).toBe("unix://@name")
    expect(Address.parse("tcp://[::1]:7000")).toEqual(Address.tcp("::1", 7000))
    expect(Address.parse("unix://@name")).toEqual({ _tag: "Unix", path: "name", abstract: true })
  })

  it("any string gives an Address or InvalidAddress, never a throw; a parsed one is canonical", () => {
    fc.assert(
      fc.property(addressLike, (input) => {
        const result = parseTotal(input)
        if (result instanceof Address.InvalidAddress) {
          expect(result._tag).toBe("InvalidAddress")
          expect(result.reason.length).toBeGreaterThan(0)
          return
        }
        // Whatever was accepted formats to a string that parses to the same address.
        expect(parseTotal(Address.format(result))).toEqual(result)
        if (result._tag !== "Unix") {
          expect(Number.isInteger(result.port) && result.port >= 0 && result.port <= 65535).toBe(
            true,
          )
        }
      }),
      { numRuns: 500 },
    )
  })

  it("ports from 0 to 65535 are accepted, others refused", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 65535 }), (p) => {
        expect(Address.parse(`tcp://127.0.0.1:${p}`)).toEqual(Address.tcp("127.0.0.1", p))
      }),
      { numRuns: 200 },
    )
    fc.assert(
      fc.property(fc.integer({ min: 65536, max: Number.MAX_SAFE_INTEGER }), (p) => {
        expect(invalid(`tcp://127.0.0.1:${p}`).reason).toContain("port")
        expect(invalid(`udp://[::1]:${p}`).reason).toContain("port")
      }),
      { numRuns: 200 },
    )
    invalid("tcp://127.0.0.1:-1")
    invalid("tcp://127.0.0.1:1.5")
    invalid("tcp://127.0.0.1:")
    invalid("tcp://127.0.0.1:0x50")
    expect(invalid("tcp://127.0.0.1:99999999999999999999999").reason).toContain("port")
  })

  it("refuses malformed hosts and schemes", () => {
    for (const input of [
      "tcp://127.0.0.1",
      "tcp://:7000",
      "tcp://::1:7000",
      "tcp://[::1]7000",
      "tcp://[::1:7000",
      "tcp://[host]:7000",
      "tcp://a/b:7000",
      "TCP://127.0.0.1:7000",
      "http://127.0.0.1:80",
      "127.0.0.1:7000",
      "",
      "tcp:/127.0.0.1:7000",
    ]) {
      invalid(input)
    }
  })

  it("refuses relative, empty and over-long unix paths", () => {
    fc.assert(
      fc.property(segment, (relative) => {
        expect(invalid(`unix://${relative}`).reason).toBe("unix socket paths are absolute")
      }),
      { numRuns: 200 },
    )
    expect(invalid("unix://./app.sock").reason).toBe("unix socket paths are absolute")
    expect(invalid("unix://").reason).toBe("empty socket path")
    expect(invalid("unix://@").reason).toBe("empty socket path")
    expect(invalid(`unix:///${"a".repeat(107)}`).reason).toContain("107")
    expect(Address.parse(`unix:///${"a".repeat(106)}`)).toEqual(Address.unix(`/${"a".repeat(106)}`))
    // The limit is in bytes: 54 two-byte characters are 108 bytes.
    expect(invalid(`unix://@${"é".repeat(54)}`).reason).toContain("107")
  })

  it("parseStream refuses udp, parseDatagram refuses tcp and unix", () => {
    fc.assert(
      fc.property(address, (a) => {
        const text = Address.format(a)
        const stream = Address.parseStream(text)
        const datagram = Address.parseDatagram(text)
        if (a._tag === "Udp") {
          expect(stream).toBeInstanceOf(Address.InvalidAddress)
          expect(datagram).toEqual(a)
        } else {
          expect(stream).toEqual(a)
          expect(datagram).toBeInstanceOf(Address.InvalidAddress)
        }
      }),
      { numRuns: 200 },
    )
    expect(Address.parseStream("nope")).toBeInstanceOf(Address.InvalidAddress)
    expect(Address.parseDatagram("nope")).toBeInstanceOf(Address.InvalidAddress)
  })
})
