import { describe, expect, it } from "vitest"
import * as AddressPolicy from "../src/AddressPolicy.js"

const kindOf = (address: string) => {
  const classified = AddressPolicy.classify(address)
  return classified === undefined ? "not an address" : classified._tag === "Public" ? "public" : classified.kind
}

describe("AddressPolicy.classify", () => {
  it.each([
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["10.0.0.1", "private"],
    ["10.255.255.255", "private"],
    ["100.64.0.1", "carrier-grade NAT"],
    ["100.100.100.200", "carrier-grade NAT"], // Alibaba Cloud metadata
    ["100.127.255.255", "carrier-grade NAT"],
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["169.254.169.254", "link-local"], // AWS, GCP, Azure, OpenStack metadata
    ["169.254.0.1", "link-local"],
    ["172.16.0.1", "private"],
    ["172.31.255.254", "private"],
    ["192.0.0.8", "reserved"],
    ["192.0.2.10", "documentation"],
    ["192.168.1.1", "private"],
    ["198.18.0.1", "benchmarking"],
    ["198.51.100.7", "documentation"],
    ["203.0.113.9", "documentation"],
    ["224.0.0.251", "multicast"],
    ["239.255.255.250", "multicast"],
    ["240.0.0.1", "reserved"],
    ["255.255.255.255", "reserved"]
  ])("IPv4 %s is %s", (address, kind) => {
    expect(kindOf(address)).toBe(kind)
  })

  it.each(["1.1.1.1", "8.8.8.8", "93.184.215.14", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0", "192.169.0.1", "223.255.255.255"])(
    "IPv4 %s next to the special ranges is public",
    (address) => {
      expect(kindOf(address)).toBe("public")
    }
  )

  it.each([
    ["::", "unspecified"],
    ["::1", "loopback"],
    ["[::1]", "loopback"],
    ["0:0:0:0:0:0:0:1", "loopback"],
    ["fc00::1", "unique local"],
    ["fd00:ec2::254", "unique local"], // AWS metadata over IPv6
    ["fdff:ffff::1", "unique local"],
    ["fe80::1", "link-local"],
    ["fe80::1%eth0", "link-local"],
    ["febf::1", "link-local"],
    ["fec0::1", "private"],
    ["ff02::1", "multicast"],
    ["2001:db8::1", "documentation"],
    ["3fff::1", "documentation"],
    ["2001::1", "reserved"], // Teredo
    ["2001:2::1", "benchmarking"],
    ["100::1", "reserved"],
    ["64:ff9b:1::a", "private"],
    ["::1.2.3.4", "reserved"], // IPv4-compatible, deprecated
    ["1000::1", "reserved"] // outside global unicast
  ])("IPv6 %s is %s", (address, kind) => {
    expect(kindOf(address)).toBe(kind)
  })

  it.each([
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["[::ffff:169.254.169.254]", "link-local"],
    ["::ffff:a9fe:a9fe", "link-local"],
    ["0:0:0:0:0:ffff:10.0.0.1", "private"],
    ["::ffff:0.0.0.0", "unspecified"],
    ["64:ff9b::a9fe:a9fe", "link-local"], // NAT64 to the metadata address
    ["64:ff9b::192.168.0.1", "private"],
    ["2002:7f00:1::", "loopback"], // 6to4 around 127.0.0.1
    ["2002:a9fe:a9fe::1", "link-local"]
  ])("an IPv6 address carrying IPv4 (%s) is classified by the IPv4 address: %s", (address, kind) => {
    expect(kindOf(address)).toBe(kind)
  })

  it.each(["2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"])(
    "IPv6 %s is public",
    (address) => {
      expect(kindOf(address)).toBe("public")
    }
  )

  it.each(["localhost", "example.com", "", "127.1", "1.2.3", "::g", "[fe80::1"])("%j is not an address", (text) => {
    expect(AddressPolicy.classify(text)).toBeUndefined()
  })

  it("names the range that made an address non-public", () => {
    expect(AddressPolicy.classify("169.254.169.254")).toEqual({ _tag: "NonPublic", kind: "link-local", range: "169.254.0.0/16" })
    expect(AddressPolicy.classify("::ffff:10.1.2.3")).toEqual({ _tag: "NonPublic", kind: "private", range: "10.0.0.0/8" })
    expect(AddressPolicy.classify("fd00:ec2::254")).toEqual({ _tag: "NonPublic", kind: "unique local", range: "fc00::/7" })
  })
})

describe("AddressPolicy.isAllowed", () => {
  it("allows public addresses, and every address when private destinations are allowed", () => {
    expect(AddressPolicy.isAllowed("8.8.8.8", false)).toBe(true)
    expect(AddressPolicy.isAllowed("127.0.0.1", false)).toBe(false)
    expect(AddressPolicy.isAllowed("::ffff:127.0.0.1", false)).toBe(false)
    expect(AddressPolicy.isAllowed("127.0.0.1", true)).toBe(true)
    expect(AddressPolicy.isAllowed("fd00:ec2::254", true)).toBe(true)
  })

  it("never allows something that is not an address", () => {
    expect(AddressPolicy.isAllowed("localhost", true)).toBe(false)
    expect(AddressPolicy.isAllowed("localhost", false)).toBe(false)
  })
})

describe("AddressPolicy.isAddress", () => {
  it("tells URL hosts that are addresses from names", () => {
    expect(AddressPolicy.isAddress("10.0.0.1")).toBe(true)
    expect(AddressPolicy.isAddress("[fd00:ec2::254]")).toBe(true)
    expect(AddressPolicy.isAddress("metadata.google.internal")).toBe(false)
  })
})

describe("AddressPolicy.refusal", () => {
  it("names the address, its kind and range, and the setting that allows it", () => {
    expect(AddressPolicy.refusal("169.254.169.254", "169.254.169.254", false)).toBe(
      "169.254.169.254 is a link-local address (169.254.0.0/16); destinations on loopback, private, link-local and " +
        "other non-public addresses are refused unless SLUICE_ALLOW_PRIVATE_DESTINATIONS=true"
    )
    expect(AddressPolicy.refusal("[::1]", "::1", false)).toMatch(/^::1 is a loopback address \(::1\/128\); /)
  })

  it("names the host and what it resolved to", () => {
    expect(AddressPolicy.refusal("localhost", "127.0.0.1", false)).toMatch(
      /^localhost resolves to 127\.0\.0\.1, which is a loopback address \(127\.0\.0\.0\/8\); .*SLUICE_ALLOW_PRIVATE_DESTINATIONS=true$/
    )
  })

  it("has nothing to say of an allowed address", () => {
    expect(AddressPolicy.refusal("example.com", "93.184.215.14", false)).toBeUndefined()
    expect(AddressPolicy.refusal("localhost", "127.0.0.1", true)).toBeUndefined()
  })
})
