/**
 * The JetStream streams Sluice relies on, created or brought up to date at every start,
 * so an upgrade or a changed limit never needs a manual `nats stream edit`.
 */
import { Subjects } from "@sluice/protocol"
import type { JetStreamManager, StreamConfig } from "@nats-io/jetstream"
import { DiscardPolicy, JetStreamApiCodes, JetStreamApiError, RetentionPolicy, StorageType } from "@nats-io/jetstream"
import { nanos } from "@nats-io/transport-node"

/** Limits of the events stream; documented in the README's configuration table. */
export interface StreamLimits {
  /** How long events are kept (ms); a destination down for longer loses the oldest. */
  readonly maxAgeMs: number
  /** Window in which a repeated `Nats-Msg-Id` is dropped by JetStream (ms). */
  readonly duplicateWindowMs: number
  /** Largest accepted event, in bytes. */
  readonly maxMessageBytes: number
  /** Replicas (1 for a single server, 3 in a cluster). */
  readonly replicas: number
}

export const defaultStreamLimits: StreamLimits = {
  maxAgeMs: 7 * 24 * 3600_000,
  duplicateWindowMs: 2 * 60_000,
  maxMessageBytes: 1024 * 1024,
  replicas: 1
}

const eventsConfig = (limits: StreamLimits): Partial<StreamConfig> & { name: string } => ({
  name: Subjects.EVENTS_STREAM,
  subjects: [Subjects.EVENTS_WILDCARD],
  retention: RetentionPolicy.Limits,
  storage: StorageType.File,
  discard: DiscardPolicy.Old,
  max_age: nanos(limits.maxAgeMs),
  duplicate_window: nanos(limits.duplicateWindowMs),
  max_msg_size: limits.maxMessageBytes,
  num_replicas: limits.replicas,
  description: "Sluice events: one durable consumer dest_<id> per destination"
})

const factsConfig = (limits: StreamLimits): Partial<StreamConfig> & { name: string } => ({
  name: Subjects.FACTS_STREAM,
  subjects: [Subjects.FACTS_WILDCARD],
  // Work queue: a fact disappears once the history writer has stored it.
  retention: RetentionPolicy.Workqueue,
  storage: StorageType.File,
  discard: DiscardPolicy.Old,
  max_age: nanos(30 * 24 * 3600_000),
  duplicate_window: nanos(limits.duplicateWindowMs),
  num_replicas: limits.replicas,
  description: "Sluice history facts waiting to be written to the database"
})

/** Events again, under the events' limits, for one destination each. */
const replaysConfig = (limits: StreamLimits): Partial<StreamConfig> & { name: string } => ({
  ...eventsConfig(limits),
  name: Subjects.REPLAYS_STREAM,
  subjects: [Subjects.REPLAYS_WILDCARD],
  // Work queue: a replayed event disappears once the destination's actor settled it.
  retention: RetentionPolicy.Workqueue,
  description: "Sluice operator replays: one subject and consumer replay_<id> per destination"
})

const upsert = async (jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }): Promise<void> => {
  try {
    await jsm.streams.info(config.name)
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) {
      await jsm.streams.add(config)
      return
    }
    throw error
  }
  const { name, retention: _retention, storage: _storage, ...update } = config
  await jsm.streams.update(name, update)
}

/** Creates the events, facts and replays streams, or updates their limits in place. */
export const ensureStreams = async (jsm: JetStreamManager, limits: StreamLimits = defaultStreamLimits): Promise<void> => {
  await upsert(jsm, eventsConfig(limits))
  await upsert(jsm, factsConfig(limits))
  await upsert(jsm, replaysConfig(limits))
}
