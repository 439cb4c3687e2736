import { describe, expect, it } from "vitest"
import type { Lease, Member, Plan, View } from "../src/LeasePolicy.js"
import { inForce, plan, weight } from "../src/LeasePolicy.js"

const TTL = 6_000
const ids = (n: number) => Array.from({ length: n }, (_, i) => `d${String(i).padStart(3, "0")}`)

/** Lease rounds of several processes that see the same destinations, run until nothing changes. */
const settle = (processes: ReadonlyArray<string>, destinations: ReadonlyArray<string>, start: Map<string, Lease>) => {
  const leases = new Map(start)
  const members = new Map<string, Member>(processes.map((p) => [p, { name: p, expiresAt: 1_000_000, wants: 0 }]))
  const now = 0
  for (let round = 0; round < 20; round++) {
    let changed = false
    for (const self of processes) {
      const view: View = { self, now, members, destinations, leases, freeSince: new Map(), graceMs: TTL }
      const step: Plan = plan(view)
      for (const id of step.release) {
        leases.delete(id)
        changed = true
      }
      for (const id of step.acquire) {
        // The compare-and-set: only a free or expired lease can be taken.
        if (!inForce(leases.get(id), members, now)) {
          leases.set(id, { owner: self, name: self })
          changed = true
        }
      }
      members.set(self, { name: self, expiresAt: 1_000_000, wants: step.wants })
    }
    if (!changed && round > 0) break
  }
  return leases
}

const counts = (leases: Map<string, Lease>) => {
  const byOwner = new Map<string, number>()
  for (const lease of leases.values()) byOwner.set(lease.owner, (byOwner.get(lease.owner) ?? 0) + 1)
  return byOwner
}

describe("LeasePolicy", () => {
  it("a lone process takes every free destination at once", () => {
    const step = plan({
      self: "a",
      now: 0,
      members: new Map(),
      destinations: ids(5),
      leases: new Map(),
      freeSince: new Map(),
      graceMs: TTL
    })
    expect([...step.acquire].sort()).toEqual(ids(5))
    expect(step.release).toEqual([])
    expect(step.wants).toBe(0)
  })

  it("three processes split 30 destinations 10/10/10, each destination held once", () => {
    const leases = settle(["a", "b", "c"], ids(30), new Map())
    expect(leases.size).toBe(30)
    expect([...counts(leases).values()].sort()).toEqual([10, 10, 10])
  })

  it("a joining process gets its share from the others, and only its share moves", () => {
    const before = settle(["a", "b"], ids(30), new Map())
    const after = settle(["a", "b", "c"], ids(30), before)
    expect([...counts(after).values()].sort()).toEqual([10, 10, 10])
    const moved = ids(30).filter((id) => before.get(id)!.owner !== after.get(id)!.owner)
    expect(moved.length).toBe(10)
    expect(moved.every((id) => after.get(id)!.owner === "c")).toBe(true)
  })

  it("a lease lasts as long as its holder's membership, the holder's own included", () => {
    const step = plan({
      self: "a",
      now: 10_000,
      members: new Map([["a", { name: "a", expiresAt: 9_000, wants: 0 }]]),
      destinations: ["x"],
      leases: new Map([["x", { owner: "a", name: "a" }]]),
      freeSince: new Map(),
      graceMs: TTL
    })
    expect(step.keep).toEqual([])
    expect(step.acquire).toEqual(["x"])
  })

  it("leases of a dead process are taken by the survivors once its membership runs out, not before", () => {
    const members = new Map<string, Member>([
      ["a", { name: "a", expiresAt: 1_000_000, wants: 0 }],
      ["b", { name: "b", expiresAt: 5_000, wants: 0 }]
    ])
    const leases = new Map<string, Lease>(ids(4).map((id) => [id, { owner: "b", name: "b" }]))
    const view = { self: "a", members, destinations: ids(4), leases, freeSince: new Map(), graceMs: TTL }
    expect(plan({ ...view, now: 4_999 }).acquire).toEqual([])
    expect([...plan({ ...view, now: 5_000 }).acquire].sort()).toEqual(ids(4))
  })

  it("processes that know different destinations never hand a lease back and forth", () => {
    // b knows only its own destination and has what it wants; a holds more than a fair share of its view.
    const members = new Map<string, Member>([
      ["a", { name: "a", expiresAt: 1_000_000, wants: 0 }],
      ["b", { name: "b", expiresAt: 1_000_000, wants: 0 }]
    ])
    const leases = new Map<string, Lease>(ids(3).map((id) => [id, { owner: "a", name: "a" }]))
    const step = plan({ self: "a", now: 0, members, destinations: ids(3), leases, freeSince: new Map(), graceMs: TTL })
    expect(step.release).toEqual([])
    expect(step.keep.length).toBe(3)
  })

  it("takes free destinations beyond its share when no other process wants more", () => {
    const members = new Map<string, Member>([["b", { name: "b", expiresAt: 1_000_000, wants: 0 }]])
    const step = plan({ self: "a", now: 0, members, destinations: ids(4), leases: new Map(), freeSince: new Map(), graceMs: TTL })
    expect(step.acquire.length).toBe(4)
  })

  it("a free destination left for a process that wants more is taken by anyone after the grace period", () => {
    // b asks for one more but never takes d001 (it does not know it): a takes it once the grace period is over.
    const members = new Map<string, Member>([
      ["a", { name: "a", expiresAt: 1_000_000, wants: 0 }],
      ["b", { name: "b", expiresAt: 1_000_000, wants: 1 }]
    ])
    const mine = new Map<string, Lease>([["d000", { owner: "a", name: "a" }]])
    const view = { self: "a", members, destinations: ["d000", "d001"], leases: mine, graceMs: TTL }
    expect(plan({ ...view, now: 5_000, freeSince: new Map([["d001", 0]]) }).acquire).toEqual([])
    expect(plan({ ...view, now: 6_000, freeSince: new Map([["d001", 0]]) }).acquire).toEqual(["d001"])
  })

  it("gives back no more than the others want", () => {
    const members = new Map<string, Member>([
      ["a", { name: "a", expiresAt: 1_000_000, wants: 0 }],
      ["c", { name: "c", expiresAt: 1_000_000, wants: 2 }]
    ])
    const leases = new Map<string, Lease>(ids(10).map((id) => [id, { owner: "a", name: "a" }]))
    const step = plan({ self: "a", now: 0, members, destinations: ids(10), leases, freeSince: new Map(), graceMs: TTL })
    expect(step.release.length).toBe(2)
    expect(step.keep.length).toBe(8)
  })

  it("rendezvous weights spread destinations evenly over processes", () => {
    const wins = new Map<string, number>()
    for (const id of ids(900)) {
      const best = ["a", "b", "c"].reduce((x, y) => (weight(x, id) >= weight(y, id) ? x : y))
      wins.set(best, (wins.get(best) ?? 0) + 1)
    }
    for (const n of wins.values()) expect(n).toBeGreaterThan(240)
  })
})
