import type { History, States } from "@sluice/protocol"
import { describe, expect, it } from "vitest"
import { healthBands } from "../src/healthBands.js"

const T0 = Date.parse("2026-11-23T09:00:00Z")
const min = (n: number) => T0 + n * 60_000
const at = (n: number) => new Date(min(n)).toISOString()

let next = 0
const transition = (n: number, from: States.HealthState, to: States.HealthState, reason = `${from}→${to}`): History.HealthTransition => ({
  id: `t${next++}`,
  from,
  to,
  reason,
  at: at(n)
})
const health = (state: States.HealthState, n: number, reason = "") => ({ state, since: at(n), reason })

const simple = (bands: ReturnType<typeof healthBands>) =>
  bands.map((b) => [b.state, (b.start - T0) / 60_000, (b.end - T0) / 60_000, b.reason])

describe("healthBands", () => {
  it("splits the window at each transition, with the reason each state began", () => {
    const transitions = [
      transition(10, "active", "down", "3 consecutive failures"),
      transition(20, "down", "recovering", "probe succeeded"),
      transition(25, "recovering", "active", "2 successes")
    ]
    expect(simple(healthBands(transitions, health("active", 25), min(0), min(60)))).toEqual([
      ["active", 0, 10, ""],
      ["down", 10, 20, "3 consecutive failures"],
      ["recovering", 20, 25, "probe succeeded"],
      ["active", 25, 60, "2 successes"]
    ])
  })

  it("accepts transitions in any order", () => {
    const transitions = [transition(25, "recovering", "active"), transition(10, "active", "down"), transition(20, "down", "recovering")]
    expect(simple(healthBands(transitions, health("active", 25), min(0), min(60))).map((b) => b[0])).toEqual([
      "active",
      "down",
      "recovering",
      "active"
    ])
  })

  it("starts the window in the state the last earlier transition left", () => {
    const transitions = [transition(-30, "active", "paused", "maintenance"), transition(15, "paused", "active", "resumed")]
    expect(simple(healthBands(transitions, health("active", 15), min(0), min(60)))).toEqual([
      ["paused", 0, 15, "maintenance"],
      ["active", 15, 60, "resumed"]
    ])
  })

  it("with no transitions the whole window is the current state", () => {
    expect(simple(healthBands([], health("disabled", -100, "gone (410)"), min(0), min(60)))).toEqual([
      ["disabled", 0, 60, ""]
    ])
  })

  it("ends in the current state even when its transition is not in the history yet", () => {
    const transitions = [transition(10, "active", "down")]
    expect(simple(healthBands(transitions, health("recovering", 50, "probe ok"), min(0), min(60)))).toEqual([
      ["active", 0, 10, ""],
      ["down", 10, 50, "active→down"],
      ["recovering", 50, 60, "probe ok"]
    ])
  })

  it("covers the window exactly, without gaps or zero-length bands", () => {
    const transitions = [
      transition(0, "active", "down"),
      transition(30, "down", "recovering"),
      transition(30, "recovering", "down"),
      transition(90, "down", "active")
    ]
    const bands = healthBands(transitions, health("active", 90), min(0), min(60))
    expect(simple(bands)).toEqual([
      ["down", 0, 60, "active→down"]
    ])
    for (let i = 1; i < bands.length; i++) expect(bands[i].start).toBe(bands[i - 1].end)
  })

  it("an empty window has no bands", () => {
    expect(healthBands([], health("active", 0), min(10), min(10))).toEqual([])
  })
})
