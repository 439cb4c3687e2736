// @vitest-environment happy-dom
/**
 * Components rendered into a DOM: the confirmation dialog's states, the event table's rows
 * and empty states, the actions offered per health state, and the live stream's parsing.
 */
import { Destination as D } from "@sluice/protocol"
import type { History } from "@sluice/protocol"
import { act } from "react"
import type { ReactNode } from "react"
import { createRoot } from "react-dom/client"
import { afterEach, describe, expect, it, vi } from "vitest"
import { ConfirmDialog } from "../src/ConfirmDialog.js"
import { healthActions, LostEventsAlert } from "../src/DestinationPage.js"
import { EventTable } from "../src/EventsPage.js"
import { parseDestinationsEvent } from "../src/useLiveDestinations.js"

declare global {
  var IS_REACT_ACT_ENVIRONMENT: boolean
}
globalThis.IS_REACT_ACT_ENVIRONMENT = true

let cleanup: Array<() => void> = []
afterEach(() => {
  for (const f of cleanup) f()
  cleanup = []
})

const render = (element: ReactNode): HTMLElement => {
  const container = document.createElement("div")
  document.body.appendChild(container)
  const root = createRoot(container)
  act(() => root.render(element))
  cleanup.push(() => {
    act(() => root.unmount())
    container.remove()
  })
  return container
}

const buttons = (container: HTMLElement) =>
  Object.fromEntries([...container.querySelectorAll("button")].map((b) => [b.textContent, b]))

describe("ConfirmDialog", () => {
  const dialog = (state: Parameters<typeof ConfirmDialog>[0]["state"], onConfirm = vi.fn(), onCancel = vi.fn()) => {
    const container = render(
      <ConfirmDialog title="Pause deliveries?" confirmLabel="Pause deliveries" state={state} onConfirm={onConfirm} onCancel={onCancel}>
        <p>Sluice stops sending.</p>
      </ConfirmDialog>
    )
    return { container, onConfirm, onCancel }
  }

  it("opens modally, says what will happen, and confirms or cancels", () => {
    const { container, onConfirm, onCancel } = dialog({ _tag: "Idle" })
    const element = container.querySelector("dialog")
    expect(element?.open).toBe(true)
    expect(element?.getAttribute("aria-labelledby")).toBe(container.querySelector("h2")?.id)
    expect(container.querySelector("h2")?.textContent).toBe("Pause deliveries?")
    expect(container.textContent).toContain("Sluice stops sending.")
    act(() => buttons(container)["Pause deliveries"].click())
    expect(onConfirm).toHaveBeenCalledTimes(1)
    act(() => buttons(container)["Cancel"].click())
    expect(onCancel).toHaveBeenCalledTimes(1)
  })

  it("disables both buttons while the action runs", () => {
    const { container, onConfirm } = dialog({ _tag: "Running" })
    const { Cancel, ["Working…"]: working } = buttons(container)
    expect(Cancel.disabled).toBe(true)
    expect(working.disabled).toBe(true)
    act(() => container.querySelector("form")?.requestSubmit())
    expect(onConfirm).not.toHaveBeenCalled()
  })

  it("keeps a failure in the dialog", () => {
    const { container } = dialog({ _tag: "Failed", message: "Cannot reach the Sluice admin API" })
    expect(container.querySelector("[role=alert]")?.textContent).toBe("Cannot reach the Sluice admin API")
    expect(buttons(container)["Pause deliveries"].disabled).toBe(false)
  })
})

const summary = (id: string, deliveries: History.EventSummary["deliveries"]): History.EventSummary => ({
  id,
  type: "order.created",
  key: "order-1",
  version: 1,
  occurredAt: "2026-11-23T09:00:00Z",
  receivedAt: "2026-11-23T09:00:01Z",
  duplicateOf: null,
  deliveries
})

const delivery = (destinationId: string, state: History.EventSummary["deliveries"][number]["state"], attempts: number) => ({
  destinationId,
  state,
  attempts,
  updatedAt: "2026-11-23T09:00:02Z"
})

describe("EventTable", () => {
  it("says why it is empty", () => {
    expect(render(<EventTable page={{ items: [], nextCursor: null }} filtered={false} />).textContent).toContain("No events yet")
    expect(render(<EventTable page={{ items: [], nextCursor: null }} filtered />).textContent).toContain(
      "No event matches this search"
    )
  })

  it("links each event and shows each destination's state", () => {
    const page = {
      items: [summary("e1", [delivery("crm", "completed", 1), delivery("billing", "dead", 5)])],
      nextCursor: null
    }
    const container = render(<EventTable page={page} filtered={false} />)
    expect(container.querySelector("a")?.getAttribute("href")).toBe("/events/e1")
    const items = [...container.querySelectorAll(".delivery-list li")].map((li) => li.textContent?.replace(/\s+/g, " ").trim())
    expect(items).toEqual(["crm completed 1 attempt", "billing dead 5 attempts"])
  })

  it("on a destination's page shows only its delivery, with the row's actions", () => {
    const page = { items: [summary("e1", [delivery("crm", "completed", 1), delivery("billing", "dead", 5)])], nextCursor: null }
    const container = render(
      <EventTable page={page} filtered={false} destinationId="billing" actions={(event) => <button>Replay {event.id}</button>} />
    )
    expect(container.querySelector(".delivery-list")?.textContent?.replace(/\s+/g, " ").trim()).toBe("dead 5 attempts")
    expect(buttons(container)["Replay e1"]).toBeDefined()
  })
})

describe("health actions", () => {
  it("offers what each state allows", () => {
    expect(healthActions("active")).toEqual(["pause", "disable"])
    expect(healthActions("down")).toEqual(["pause", "disable"])
    expect(healthActions("recovering")).toEqual(["pause", "disable"])
    expect(healthActions("paused")).toEqual(["resume", "disable"])
    expect(healthActions("disabled")).toEqual(["enable"])
  })
})

describe("live stream events", () => {
  const view = D.toView(
    D.makeDestination(
      { id: "crm", url: "https://crm.example.com/hook", subscriptions: ["order.*"] },
      { id: "crm", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", now: "2026-11-23T08:00:00Z" }
    ),
    { state: "down", since: "2026-11-23T09:00:00Z", reason: "3 consecutive failures" }
  )

  it("decodes the destinations list", () => {
    expect(parseDestinationsEvent(JSON.stringify([view]))).toEqual([view])
  })

  it("ignores what is not a list of destinations", () => {
    expect(parseDestinationsEvent("not json")).toBeUndefined()
    expect(parseDestinationsEvent(JSON.stringify([{ id: "crm" }]))).toBeUndefined()
    expect(parseDestinationsEvent(JSON.stringify({ destinations: [] }))).toBeUndefined()
  })
})

describe("LostEventsAlert", () => {
  it("says how many events were lost, why and when, and that the receiver will be told", () => {
    const container = render(
      <LostEventsAlert
        lost={{ since: "2026-11-23T09:00:00.000Z", until: "2026-11-23T10:00:00.000Z", dead: 2, disabled: 0, expired: 1 }}
      />
    )
    const alert = container.querySelector('[role="alert"]')!
    expect(alert.textContent).toContain("3 events lost to this destination (2 dead-lettered, 1 expired from the stream)")
    expect(alert.textContent).not.toContain("disabled")
    expect(alert.textContent).toContain("sluice.sync_error")
    expect(Array.from(alert.querySelectorAll("time"), (t) => t.getAttribute("datetime"))).toEqual([
      "2026-11-23T09:00:00.000Z",
      "2026-11-23T10:00:00.000Z"
    ])
  })
})
