/**
 * Which network addresses a destination may be delivered to. A destination URL is an
 * operator's input that makes the broker send requests from inside its network: pointed at
 * loopback, a private range or a cloud metadata address (169.254.169.254, fd00:ec2::254), it
 * would turn Sluice into a way to reach what only the broker's host can reach. So only
 * public unicast addresses are allowed, unless `SLUICE_ALLOW_PRIVATE_DESTINATIONS` says
 * otherwise. Pure: the admin API applies it to literal and resolved addresses when a URL is
 * set, the sender to every address it connects to.
 */
import { isIPv4, isIPv6 } from "node:net"

/** Why an address is not public. */
export type AddressKind =
  | "unspecified"
  | "loopback"
  | "private"
  | "carrier-grade NAT"
  | "link-local"
  | "unique local"
  | "multicast"
  | "documentation"
  | "benchmarking"
  | "reserved"

/** A non-public address: what it is, and the range that made it so. */
export interface NonPublic {
  readonly kind: AddressKind
  /** The range in CIDR notation, e.g. `169.254.0.0/16`. */
  readonly range: string
}

/** What `classify` says of an address: public, or which non-public range it is in. */
export type Classification = { readonly _tag: "Public" } | ({ readonly _tag: "NonPublic" } & NonPublic)

const publicAddress: Classification = { _tag: "Public" }

interface Range {
  readonly base: bigint
  readonly bits: number
  readonly width: 32 | 128
  readonly kind: AddressKind
  readonly text: string
}

const v4ToBigInt = (address: string): bigint =>
  address.split(".").reduce((n, octet) => (n << 8n) | BigInt(Number(octet)), 0n)

/** The 128 bits of an IPv6 address (already checked by `isIPv6`, zone removed). */
const v6ToBigInt = (address: string): bigint => {
  // A trailing dotted quad (`::ffff:1.2.3.4`) is the last two groups written in decimal.
  const text = address.replace(/(\d+\.\d+\.\d+\.\d+)$/, (quad) => {
    const v4 = Number(v4ToBigInt(quad))
    return `${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`
  })
  const [head, tail] = text.split("::") as [string, string | undefined]
  const groups = (part: string) => (part === "" ? [] : part.split(":").map((group) => parseInt(group, 16)))
  const left = groups(head)
  const right = tail === undefined ? [] : groups(tail)
  const all = [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right]
  return all.reduce((n, group) => (n << 16n) | BigInt(group), 0n)
}

const range = (cidr: string, kind: AddressKind): Range => {
  const [base, bits] = cidr.split("/") as [string, string]
  const v4 = isIPv4(base)
  return { base: v4 ? v4ToBigInt(base) : v6ToBigInt(base), bits: Number(bits), width: v4 ? 32 : 128, kind, text: cidr }
}

const contains = (r: Range, n: bigint): boolean => n >> BigInt(r.width - r.bits) === r.base >> BigInt(r.width - r.bits)

/** IPv4 ranges that are not public unicast (IANA special-purpose registry, RFC 6890 and successors). */
const v4Ranges: ReadonlyArray<Range> = [
  range("0.0.0.0/8", "unspecified"),
  range("10.0.0.0/8", "private"),
  range("100.64.0.0/10", "carrier-grade NAT"),
  range("127.0.0.0/8", "loopback"),
  range("169.254.0.0/16", "link-local"),
  range("172.16.0.0/12", "private"),
  range("192.0.0.0/24", "reserved"),
  range("192.0.2.0/24", "documentation"),
  range("192.88.99.0/24", "reserved"),
  range("192.168.0.0/16", "private"),
  range("198.18.0.0/15", "benchmarking"),
  range("198.51.100.0/24", "documentation"),
  range("203.0.113.0/24", "documentation"),
  range("224.0.0.0/4", "multicast"),
  range("240.0.0.0/4", "reserved")
]

/** IPv6 ranges checked before "outside 2000::/3 is not public"; the first match wins. */
const v6Ranges: ReadonlyArray<Range> = [
  range("::/128", "unspecified"),
  range("::1/128", "loopback"),
  range("64:ff9b:1::/48", "private"),
  range("100::/64", "reserved"),
  range("2001::/32", "reserved"),
  range("2001:2::/48", "benchmarking"),
  range("2001:db8::/32", "documentation"),
  range("3fff::/20", "documentation"),
  range("fc00::/7", "unique local"),
  range("fe80::/10", "link-local"),
  range("fec0::/10", "private"),
  range("ff00::/8", "multicast")
]

/** Prefixes that carry an IPv4 address in their last 32 bits, which is what gets reached. */
const v4Carriers: ReadonlyArray<Range> = [
  range("::ffff:0:0/96", "reserved"), // IPv4-mapped
  range("64:ff9b::/96", "reserved") // NAT64 well-known prefix
]
const sixToFour = range("2002::/16", "reserved")
const globalUnicast = range("2000::/3", "reserved")

const classifyV4 = (n: bigint): Classification => {
  const hit = v4Ranges.find((r) => contains(r, n))
  return hit === undefined ? publicAddress : { _tag: "NonPublic", kind: hit.kind, range: hit.text }
}

const classifyV6 = (n: bigint): Classification => {
  const hit = v6Ranges.find((r) => contains(r, n))
  if (hit !== undefined) return { _tag: "NonPublic", kind: hit.kind, range: hit.text }
  if (v4Carriers.some((r) => contains(r, n))) return classifyV4(n & 0xffffffffn)
  if (contains(sixToFour, n)) return classifyV4((n >> 80n) & 0xffffffffn)
  // Everything outside global unicast is unassigned or special, IPv4-compatible `::a.b.c.d` included.
  if (!contains(globalUnicast, n)) return { _tag: "NonPublic", kind: "reserved", range: "outside 2000::/3" }
  return publicAddress
}

/** The address without the brackets of a URL host or an IPv6 zone (`fe80::1%eth0`). */
export const bareAddress = (host: string): string => {
  const unbracketed = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host
  const zone = unbracketed.indexOf("%")
  return zone === -1 ? unbracketed : unbracketed.slice(0, zone)
}

/** Whether a URL host (`10.0.0.1`, `[::1]`) is an IP address rather than a name to resolve. */
export const isAddress = (host: string): boolean => {
  const bare = bareAddress(host)
  return isIPv4(bare) || isIPv6(bare)
}

/**
 * What kind of address `address` is (IPv4 dotted quad or IPv6, brackets and zone allowed);
 * `undefined` when it is not an IP address at all. Addresses that embed an IPv4 address
 * (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are classified by it.
 */
export const classify = (address: string): Classification | undefined => {
  const bare = bareAddress(address)
  if (isIPv4(bare)) return classifyV4(v4ToBigInt(bare))
  if (isIPv6(bare)) return classifyV6(v6ToBigInt(bare))
  return undefined
}

/** Whether a destination may be delivered to `address`; a non-address is never allowed. */
export const isAllowed = (address: string, allowPrivate: boolean): boolean => {
  if (allowPrivate) return classify(address) !== undefined
  return classify(address)?._tag === "Public"
}

/** The setting that lifts the restriction, named in every refusal. */
export const SETTING = "SLUICE_ALLOW_PRIVATE_DESTINATIONS"

/**
 * Why a destination may not use `address`: the host as written, what it resolved to (when it
 * is a name), the kind of address, and the setting that allows it. `undefined` when allowed.
 */
export const refusal = (host: string, address: string, allowPrivate: boolean): string | undefined => {
  const classified = classify(address)
  if (classified === undefined) return `${host} is not an IP address`
  if (classified._tag === "Public" || allowPrivate) return undefined
  const bare = bareAddress(address)
  const what = bareAddress(host) === bare ? bare : `${host} resolves to ${bare}, which`
  return (
    `${what} is a ${classified.kind} address (${classified.range}); destinations on loopback, private, ` +
    `link-local and other non-public addresses are refused unless ${SETTING}=true`
  )
}
