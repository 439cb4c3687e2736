import { describe, expect, it } from "vitest"
import { isFiltered, queryFromParams, queryToParams, withoutCursor } from "../src/eventQuery.js"

describe("event query ↔ URL parameters", () => {
  it("round-trips every filter", () => {
    const query = {
      type: "order.created",
      key: "order 42/é",
      destination: "crm",
      state: "dead" as const,
      since: "2026-11-23T09:00:00.000Z",
      until: "2026-11-23T10:00:00.000Z",
      cursor: "abc==",
      limit: 50
    }
    const params = queryToParams(query)
    expect(params.toString()).toBe(
      "type=order.created&key=order+42%2F%C3%A9&destination=crm&state=dead&since=2026-11-23T09%3A00%3A00.000Z&until=2026-11-23T10%3A00%3A00.000Z&cursor=abc%3D%3D&limit=50"
    )
    expect(queryFromParams(new URLSearchParams(params.toString()))).toEqual(query)
  })

  it("leaves empty fields out of the URL", () => {
    expect(queryToParams({ type: "order.created", key: undefined }).toString()).toBe("type=order.created")
    expect(queryToParams({}).toString()).toBe("")
  })

  it("drops what does not decode and keeps the rest", () => {
    expect(
      queryFromParams(new URLSearchParams("state=exploded&since=yesterday&limit=0&type=%20order.created%20&key=&other=1"))
    ).toEqual({ type: "order.created" })
    expect(queryFromParams(new URLSearchParams("limit=10&state=completed"))).toEqual({ limit: 10, state: "completed" })
  })

  it("a changed search starts from the first page", () => {
    expect(withoutCursor({ type: "a", cursor: "c" })).toEqual({ type: "a" })
  })

  it("knows whether anything is filtered", () => {
    expect(isFiltered({})).toBe(false)
    expect(isFiltered({ cursor: "c", limit: 10 })).toBe(false)
    expect(isFiltered({ state: "dead" })).toBe(true)
  })
})
