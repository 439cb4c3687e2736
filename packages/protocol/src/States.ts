/**
 * The states of a delivery (one event × one destination) and of a destination's health.
 * Semantics: DESIGN.md, "Delivery states" and "Health state machine".
 */
import { Schema } from "effect"

export const DeliveryState = Schema.Literal(
  "queued",
  "processing",
  "completed",
  "errored",
  "dead",
  "canceled",
  "ignored",
  "duplicate",
  "disabled"
).annotations({ identifier: "DeliveryState" })
export type DeliveryState = typeof DeliveryState.Type

/** States a delivery never leaves on its own (only an operator's replay moves it on). */
export const isFinalDeliveryState = (state: DeliveryState): boolean =>
  state !== "queued" && state !== "processing" && state !== "errored"

export const HealthState = Schema.Literal("active", "down", "recovering", "paused", "disabled").annotations({
  identifier: "HealthState"
})
export type HealthState = typeof HealthState.Type
