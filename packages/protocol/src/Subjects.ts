/**
 * Names of everything Sluice creates in NATS, in one place, so that `nats stream info`,
 * `nats consumer info` and the code always agree.
 */

/** The stream that holds every published event. */
export const EVENTS_STREAM = "SLUICE_EVENTS"
/** Subject prefix of events: `sluice.events.<type tokens>`. */
export const EVENTS_PREFIX = "sluice.events"
/** Every event subject. */
export const EVENTS_WILDCARD = `${EVENTS_PREFIX}.>`

/** The stream of history facts (attempts, outcomes, health changes) awaiting the history writer. */
export const FACTS_STREAM = "SLUICE_FACTS"
export const FACTS_PREFIX = "sluice.facts"
export const FACTS_WILDCARD = `${FACTS_PREFIX}.>`

/** Durable consumer that copies events into the history database. */
export const HISTORY_EVENTS_CONSUMER = "sluice_history_events"
/** Durable consumer that copies facts into the history database. */
export const HISTORY_FACTS_CONSUMER = "sluice_history_facts"

/** Headers set on every event message. */
export const Headers = {
  /** JetStream deduplication: the idempotency key, else the event id. */
  msgId: "Nats-Msg-Id",
  eventId: "Sluice-Event-Id",
  type: "Sluice-Type",
  key: "Sluice-Key"
} as const

/** Subject an event of this type is published on. */
export const eventSubject = (type: string): string => `${EVENTS_PREFIX}.${type}`

/** Event type carried by an event subject. */
export const typeOfSubject = (subject: string): string => subject.slice(EVENTS_PREFIX.length + 1)

/** Durable consumer name of a destination. */
export const destinationConsumer = (destinationId: string): string => `dest_${destinationId}`

/** Subject of a history fact. */
export const factSubject = (kind: string): string => `${FACTS_PREFIX}.${kind}`

/**
 * Whether an event type matches a subscription pattern, with NATS semantics:
 * `*` matches exactly one token, a trailing `>` one or more.
 */
export const matchesPattern = (pattern: string, type: string): boolean => {
  const p = pattern.split(".")
  const t = type.split(".")
  for (let i = 0; i < p.length; i++) {
    const token = p[i]
    if (token === ">") return t.length > i
    if (i >= t.length) return false
    if (token !== "*" && token !== t[i]) return false
  }
  return p.length === t.length
}

/** Whether an event type matches any of a destination's subscriptions. */
export const matchesAny = (patterns: ReadonlyArray<string>, type: string): boolean =>
  patterns.some((pattern) => matchesPattern(pattern, type))

/**
 * The JetStream filter subject for a destination's consumer. nats-server 2.9 allows one
 * filter per consumer: a single pattern filters on the server, several fall back to the
 * whole stream and are matched by the actor.
 */
export const consumerFilter = (patterns: ReadonlyArray<string>): string =>
  patterns.length === 1 ? eventSubject(patterns[0]!) : EVENTS_WILDCARD

/** Core NATS subject on which a changed destination's id is announced to every broker process. */
export const CONTROL_DESTINATIONS = "sluice.control.destinations"

/** Operator replays, one subject per destination, consumed by that destination's actor. */
export const REPLAYS_STREAM = "SLUICE_REPLAYS"
export const REPLAYS_PREFIX = "sluice.replay"
export const REPLAYS_WILDCARD = `${REPLAYS_PREFIX}.>`
export const replaySubject = (destinationId: string): string => `${REPLAYS_PREFIX}.${destinationId}`
export const replayConsumer = (destinationId: string): string => `replay_${destinationId}`
