/**
 * A destination: an HTTP endpoint that receives the events it subscribed to, with the
 * policies (rate, concurrency, ordering, retries, health thresholds) that protect it.
 */
import { Schema } from "effect"
import { Timestamp } from "./Envelope.js"
import { HealthState } from "./States.js"

/** Destination ids become JetStream consumer names (`dest_<id>`), hence the narrow alphabet. */
export const DestinationId = Schema.String.pipe(
  Schema.pattern(/^[a-z0-9][a-z0-9_-]{0,62}$/, {
    message: () => "must be 1-63 characters of lowercase letters, digits, '_' or '-', starting with a letter or digit"
  })
).annotations({ identifier: "DestinationId" })

/** An event-type pattern: dotted tokens where `*` matches one token and a final `>` the rest. */
export const SubscriptionPattern = Schema.String.pipe(
  Schema.maxLength(200),
  Schema.pattern(/^(([A-Za-z0-9_-]+|\*)(\.([A-Za-z0-9_-]+|\*))*(\.>)?|>)$/, {
    message: () => "must be dot-separated tokens, '*' for one token or a final '>' (for example order.* or >)"
  })
).annotations({ identifier: "SubscriptionPattern" })

const isHttpUrl = (s: string): boolean => {
  try {
    const url = new URL(s)
    return (url.protocol === "http:" || url.protocol === "https:") && url.username === "" && url.password === ""
  } catch {
    return false
  }
}

export const DestinationUrl = Schema.String.pipe(
  Schema.maxLength(2048),
  Schema.filter(isHttpUrl, { message: () => "must be an absolute http(s) URL without credentials" })
).annotations({ identifier: "DestinationUrl" })

/** Standard Webhooks secret: `whsec_` followed by base64 key bytes. */
export const SigningSecret = Schema.String.pipe(
  Schema.pattern(/^whsec_[A-Za-z0-9+/]{22,}={0,2}$/, {
    message: () => "must be 'whsec_' followed by at least 16 base64-encoded bytes"
  })
).annotations({ identifier: "SigningSecret" })

const PositiveInt = (max: number) => Schema.Int.pipe(Schema.between(1, max))
const Millis = Schema.Int.pipe(Schema.between(0, 365 * 24 * 3600 * 1000))

/** Requests per second with a burst; the bucket is shared by every process delivering to the destination. */
export const RateLimit = Schema.Struct({
  perSecond: Schema.Number.pipe(Schema.greaterThan(0), Schema.lessThanOrEqualTo(100_000)),
  burst: PositiveInt(100_000)
}).annotations({ identifier: "RateLimit" })
export type RateLimit = typeof RateLimit.Type

/** Exponential back-off with jitter for one event; it goes `dead` past maxAttempts or maxAgeMs. */
export const RetryPolicy = Schema.Struct({
  initialMs: Millis,
  factor: Schema.Number.pipe(Schema.between(1, 10)),
  maxMs: Millis,
  /** Fraction of each delay that is randomised (0 = none, 1 = full jitter). */
  jitter: Schema.Number.pipe(Schema.between(0, 1)),
  maxAttempts: PositiveInt(1000),
  maxAgeMs: Millis
}).annotations({ identifier: "RetryPolicy" })
export type RetryPolicy = typeof RetryPolicy.Type

/** When the circuit opens and closes, and how the recoverer probes a destination that is down. */
export const HealthPolicy = Schema.Struct({
  /** Consecutive failed attempts that open the circuit (`active` → `down`). */
  failureThreshold: PositiveInt(10_000),
  /** Consecutive successes in `recovering` that close it again. */
  successThreshold: PositiveInt(10_000),
  probeInitialMs: Millis,
  probeMaxMs: Millis,
  /** A destination `down` longer than this is disabled. */
  disableAfterMs: Millis
}).annotations({ identifier: "HealthPolicy" })
export type HealthPolicy = typeof HealthPolicy.Type

/** Optional batching: one request carries a transaction of several events. */
export const BatchPolicy = Schema.Struct({
  maxEvents: PositiveInt(1000),
  maxWaitMs: Millis
}).annotations({ identifier: "BatchPolicy" })

export const Ordering = Schema.Literal("none", "key")

/** The tunables of a destination; every field has a default. */
export const DestinationSettings = Schema.Struct({
  rateLimit: Schema.NullOr(RateLimit),
  maxConcurrency: PositiveInt(1000),
  ordering: Ordering,
  /** Keys whose newer events always cancel older queued ones (state-sync destinations). */
  latestOnly: Schema.Boolean,
  timeoutMs: PositiveInt(300_000),
  /** Events that may wait in memory behind busy keys; JetStream holds the rest. */
  maxQueued: PositiveInt(1_000_000),
  retry: RetryPolicy,
  health: HealthPolicy,
  batch: Schema.NullOr(BatchPolicy)
})
export type DestinationSettings = typeof DestinationSettings.Type

export const defaultSettings: DestinationSettings = {
  rateLimit: null,
  maxConcurrency: 10,
  ordering: "key",
  latestOnly: false,
  timeoutMs: 10_000,
  maxQueued: 10_000,
  retry: { initialMs: 1_000, factor: 2, maxMs: 3_600_000, jitter: 0.2, maxAttempts: 25, maxAgeMs: 3 * 24 * 3600_000 },
  health: {
    failureThreshold: 5,
    successThreshold: 3,
    probeInitialMs: 1_000,
    probeMaxMs: 3_600_000,
    disableAfterMs: 3 * 24 * 3600_000
  },
  batch: null
}

/** A destination as stored by the broker, secret included. */
export const Destination = Schema.Struct({
  id: DestinationId,
  name: Schema.String,
  url: DestinationUrl,
  subscriptions: Schema.NonEmptyArray(SubscriptionPattern),
  secret: SigningSecret,
  ...DestinationSettings.fields,
  createdAt: Timestamp,
  updatedAt: Timestamp
}).annotations({ identifier: "Destination" })
export type Destination = typeof Destination.Type

/** The current health of a destination and why it is so. */
export const Health = Schema.Struct({
  state: HealthState,
  since: Timestamp,
  reason: Schema.String
}).annotations({ identifier: "Health" })
export type Health = typeof Health.Type

/** The event type that tells a destination it lost events and should reconcile. */
export const SYNC_ERROR_TYPE = "sluice.sync_error"

/**
 * Events a destination will never get, since it was last told: dead-lettered, recorded as
 * `disabled`, or expired from the stream before it could take them. The data of its next
 * `sluice.sync_error` event, and the alert the admin API shows until that is sent.
 */
export const LostEvents = Schema.Struct({
  /** When the first and the last of them were published. */
  since: Timestamp,
  until: Timestamp,
  dead: Schema.NonNegativeInt,
  disabled: Schema.NonNegativeInt,
  expired: Schema.NonNegativeInt
}).annotations({ identifier: "LostEvents" })
export type LostEvents = typeof LostEvents.Type

/** A destination as the admin API shows it: the secret is never returned in full. */
export const DestinationView = Schema.Struct({
  ...Destination.omit("secret").fields,
  secretHint: Schema.String,
  health: Health,
  /** Losses its next `sluice.sync_error` event will report; absent when there are none. */
  lostEvents: Schema.optional(LostEvents),
  /** The broker process (`SLUICE_PROCESS_NAME`) running its actor now; absent while none does. */
  owner: Schema.optional(Schema.String)
}).annotations({ identifier: "DestinationView" })
export type DestinationView = typeof DestinationView.Type

const settingsPatchFields = {
  rateLimit: Schema.optional(Schema.NullOr(RateLimit)),
  maxConcurrency: Schema.optional(DestinationSettings.fields.maxConcurrency),
  ordering: Schema.optional(Ordering),
  latestOnly: Schema.optional(Schema.Boolean),
  timeoutMs: Schema.optional(DestinationSettings.fields.timeoutMs),
  maxQueued: Schema.optional(DestinationSettings.fields.maxQueued),
  retry: Schema.optional(Schema.partial(RetryPolicy)),
  health: Schema.optional(Schema.partial(HealthPolicy)),
  batch: Schema.optional(Schema.NullOr(BatchPolicy))
}

/** Body of `POST /destinations`: what is not given takes its default. */
export const CreateDestination = Schema.Struct({
  id: Schema.optional(DestinationId),
  name: Schema.optional(Schema.String.pipe(Schema.maxLength(200))),
  url: DestinationUrl,
  subscriptions: Schema.NonEmptyArray(SubscriptionPattern),
  secret: Schema.optional(SigningSecret),
  ...settingsPatchFields
}).annotations({ identifier: "CreateDestination" })
export type CreateDestination = typeof CreateDestination.Type

/** Body of `PATCH /destinations/:id`: only the given fields change; nested policies merge. */
export const UpdateDestination = Schema.Struct({
  name: Schema.optional(Schema.String.pipe(Schema.maxLength(200))),
  url: Schema.optional(DestinationUrl),
  subscriptions: Schema.optional(Schema.NonEmptyArray(SubscriptionPattern)),
  ...settingsPatchFields
}).annotations({ identifier: "UpdateDestination" })
export type UpdateDestination = typeof UpdateDestination.Type

type SettingsPatch = Omit<UpdateDestination, "name" | "url" | "subscriptions">

const mergeSettings = (base: DestinationSettings, patch: SettingsPatch): DestinationSettings => ({
  rateLimit: patch.rateLimit === undefined ? base.rateLimit : patch.rateLimit,
  maxConcurrency: patch.maxConcurrency ?? base.maxConcurrency,
  ordering: patch.ordering ?? base.ordering,
  latestOnly: patch.latestOnly ?? base.latestOnly,
  timeoutMs: patch.timeoutMs ?? base.timeoutMs,
  maxQueued: patch.maxQueued ?? base.maxQueued,
  retry: { ...base.retry, ...patch.retry },
  health: { ...base.health, ...patch.health },
  batch: patch.batch === undefined ? base.batch : patch.batch
})

/** Resolves a create request into a stored destination. */
export const makeDestination = (
  input: CreateDestination,
  generated: { readonly id: string; readonly secret: string; readonly now: string }
): Destination => ({
  id: input.id ?? generated.id,
  name: input.name ?? input.id ?? generated.id,
  url: input.url,
  subscriptions: input.subscriptions,
  secret: input.secret ?? generated.secret,
  ...mergeSettings(defaultSettings, input),
  createdAt: generated.now,
  updatedAt: generated.now
})

/** Applies a PATCH to a stored destination. */
export const updateDestination = (destination: Destination, patch: UpdateDestination, now: string): Destination => ({
  ...destination,
  name: patch.name ?? destination.name,
  url: patch.url ?? destination.url,
  subscriptions: patch.subscriptions ?? destination.subscriptions,
  ...mergeSettings(destination, patch),
  updatedAt: now
})

/** Enough of a secret to tell two apart, never enough to use. */
export const secretHint = (secret: string): string => `${secret.slice(0, 10)}…`

export const toView = (
  destination: Destination,
  health: Health,
  extra: { readonly lostEvents?: LostEvents | undefined; readonly owner?: string | undefined } = {}
): DestinationView => {
  const { secret, ...rest } = destination
  return {
    ...rest,
    secretHint: secretHint(secret),
    health,
    ...(extra.lostEvents === undefined ? {} : { lostEvents: extra.lostEvents }),
    ...(extra.owner === undefined ? {} : { owner: extra.owner })
  }
}
