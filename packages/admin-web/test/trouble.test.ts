import type { Destination, States } from "@sluice/protocol"
import { Destination as D } from "@sluice/protocol"
import { describe, expect, it } from "vitest"
import { sortByTrouble } from "../src/trouble.js"

const view = (id: string, state: States.HealthState, since = "2026-11-23T09:00:00Z"): Destination.DestinationView =>
  D.toView(
    D.makeDestination(
      { id, url: `https://${id}.example.com/hook`, subscriptions: ["order.*"] },
      { id, secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", now: "2026-11-23T08:00:00Z" }
    ),
    { state, since, reason: "" }
  )

const order = (list: ReadonlyArray<Destination.DestinationView>) => sortByTrouble(list).map((d) => d.id)

describe("sortByTrouble", () => {
  it("puts down first, then disabled, recovering, paused and active", () => {
    expect(
      order([view("a", "active"), view("p", "paused"), view("r", "recovering"), view("x", "disabled"), view("d", "down")])
    ).toEqual(["d", "x", "r", "p", "a"])
  })

  it("within a troubled state, the longest in trouble comes first", () => {
    expect(
      order([
        view("recent", "down", "2026-11-23T09:30:00Z"),
        view("oldest", "down", "2026-11-23T08:00:00Z"),
        view("middle", "down", "2026-11-23T09:00:00Z")
      ])
    ).toEqual(["oldest", "middle", "recent"])
  })

  it("active ones stay in name order however recently they recovered", () => {
    expect(
      order([view("b", "active", "2026-11-23T09:00:00Z"), view("c", "active", "2026-11-23T07:00:00Z"), view("a", "active")])
    ).toEqual(["a", "b", "c"])
  })

  it("leaves the input as it was", () => {
    const list = [view("a", "active"), view("d", "down")]
    sortByTrouble(list)
    expect(list.map((d) => d.id)).toEqual(["a", "d"])
  })
})
