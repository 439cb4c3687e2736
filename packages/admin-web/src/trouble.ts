/**
 * The order of the destinations overview: during an incident the destinations in trouble
 * are the ones an operator came for, so they come first.
 */
import type { Destination, States } from "@sluice/protocol"

/** Lower is more urgent: down (nothing flows), disabled, recovering, paused, then active. */
export const troubleRank: Record<States.HealthState, number> = {
  down: 0,
  disabled: 1,
  recovering: 2,
  paused: 3,
  active: 4
}

/**
 * Destinations most urgent first; within one state the longest in it first (the oldest
 * trouble), then by name so the order holds still between updates.
 */
export const sortByTrouble = (
  destinations: ReadonlyArray<Destination.DestinationView>
): ReadonlyArray<Destination.DestinationView> =>
  [...destinations].sort(
    (a, b) =>
      troubleRank[a.health.state] - troubleRank[b.health.state] ||
      (a.health.state === "active" ? 0 : Date.parse(a.health.since) - Date.parse(b.health.since)) ||
      a.name.localeCompare(b.name) ||
      a.id.localeCompare(b.id)
  )
