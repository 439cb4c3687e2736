/**
 * What a destination does with an event the moment it arrives, given what it already holds
 * for the event's key and the newest version it delivered (DESIGN.md, "Delivery states"):
 * deliver it — possibly canceling older queued events it supersedes — or record it as
 * `ignored` (a newer version was delivered) or `duplicate` (this version was already
 * accepted). Pure, so every rule is a unit test.
 */
import { Envelope } from "@sluice/protocol"

/** An event of the same key the destination holds and has not settled. */
export interface Queued {
  readonly id: string
  readonly version: Envelope.EventVersion | undefined
  /** A request for it is on the wire: too late to cancel. */
  readonly inFlight: boolean
}

/** The newest version of a key this destination completed. */
export interface Delivered {
  readonly version: Envelope.EventVersion
  readonly eventId: string
}

export type Verdict =
  | { readonly _tag: "Deliver"; readonly cancel: ReadonlyArray<Queued> }
  | { readonly _tag: "Ignored"; readonly reason: string }
  | { readonly _tag: "Duplicate"; readonly of: string }
  /** The very event was completed before (its acknowledgement was lost in a crash): settle it quietly. */
  | { readonly _tag: "AlreadyDelivered" }

const deliver: Verdict = { _tag: "Deliver", cancel: [] }

const show = (version: Envelope.EventVersion) => (typeof version === "number" ? String(version) : version)

/**
 * The rules, for an event with key and version (anything else is simply delivered):
 * 1. a newer version of the key was delivered → `Ignored`, naming it;
 * 2. this version was delivered, or is held under another event id → `Duplicate` of that event;
 * 3. otherwise deliver; when the event supersedes (`supersedes: true`, or the destination is
 *    `latestOnly`), queued events of the key with an older version are canceled by it, unless
 *    already in flight.
 * Incomparable versions (a number and a time) are never older, newer or equal.
 */
export const decide = (
  event: Pick<Envelope.Envelope, "id" | "key" | "version" | "supersedes">,
  queued: ReadonlyArray<Queued>,
  delivered: Delivered | undefined,
  latestOnly: boolean
): Verdict => {
  const version = event.version
  if (event.key === undefined || version === undefined) return deliver
  if (delivered !== undefined) {
    if (delivered.eventId === event.id) return { _tag: "AlreadyDelivered" }
    const order = Envelope.compareVersions(delivered.version, version)
    if (order === 1) {
      return {
        _tag: "Ignored",
        reason: `version ${show(version)} is older than version ${show(delivered.version)} already delivered (event ${delivered.eventId})`
      }
    }
    if (order === 0) return { _tag: "Duplicate", of: delivered.eventId }
  }
  const same = queued.find(
    (q) => q.id !== event.id && q.version !== undefined && Envelope.compareVersions(q.version, version) === 0
  )
  if (same !== undefined) return { _tag: "Duplicate", of: same.id }
  if (!(event.supersedes === true || latestOnly)) return deliver
  return {
    _tag: "Deliver",
    cancel: queued.filter(
      (q) => !q.inFlight && q.version !== undefined && Envelope.compareVersions(q.version, version) === -1
    )
  }
}
