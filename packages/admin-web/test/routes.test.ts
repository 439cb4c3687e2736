import { describe, expect, it } from "vitest"
import { matchRoute, paths } from "../src/routes.js"

describe("routes", () => {
  it("matches every page", () => {
    expect(matchRoute("/", "")).toEqual({ page: "destinations" })
    expect(matchRoute("/destinations", "")).toEqual({ page: "destinations" })
    expect(matchRoute("/destinations/crm", "")).toEqual({ page: "destination", id: "crm" })
    expect(matchRoute("/events", "?state=dead")).toEqual({ page: "events", search: "?state=dead" })
    expect(matchRoute("/events/01JABC:x.y", "")).toEqual({ page: "event", id: "01JABC:x.y" })
    expect(matchRoute("/audit", "")).toEqual({ page: "audit" })
    expect(matchRoute("/audit/", "")).toEqual({ page: "audit" })
  })

  it("anything else is not found", () => {
    expect(matchRoute("/destinations/crm/more", "")).toEqual({ page: "notFound", path: "/destinations/crm/more" })
    expect(matchRoute("/nope", "")).toEqual({ page: "notFound", path: "/nope" })
    expect(matchRoute("/events/%E0%A4%A", "")).toEqual({ page: "notFound", path: "/events/%E0%A4%A" })
  })

  it("paths and routes agree, whatever the id holds", () => {
    for (const id of ["crm", "a b/c?d#e", "01JABC:x.y"]) {
      const destination = new URL(paths.destination(id), "http://x")
      expect(matchRoute(destination.pathname, destination.search)).toEqual({ page: "destination", id })
      const event = new URL(paths.event(id), "http://x")
      expect(matchRoute(event.pathname, event.search)).toEqual({ page: "event", id })
    }
    expect(paths.events()).toBe("/events")
    expect(paths.events(new URLSearchParams({ state: "dead" }))).toBe("/events?state=dead")
  })
})
