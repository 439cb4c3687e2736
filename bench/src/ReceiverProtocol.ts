/**
 * What the benchmark asks of its receivers process and what it answers. Receivers stand in
 * for the destinations: plain keep-alive HTTP servers that answer at once (or as scripted:
 * slowly, with 503) and note when each event arrived, so every contender is measured at the
 * same place on the same servers.
 */

/** How one server answers from now on. */
export interface ServerMode {
  readonly status: number
  /** Answer this long after the request arrived (a slow receiver). */
  readonly delayMs: number
}

/** Delivery latency, ms from the publish call to the request's arrival, over first deliveries. */
export interface LatencySummary {
  readonly count: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly max: number
}

/** What arrived since the last reset. */
export interface Summary {
  /** Requests answered 2xx, duplicates included. */
  readonly delivered: number
  /** Distinct event ids answered 2xx. */
  readonly unique: number
  /** Requests answered with anything but 2xx (the receiver was scripted to refuse). */
  readonly refused: number
  /** 2xx answers for an event id already answered 2xx before. */
  readonly duplicates: number
  /** First deliveries of keyed events whose sequence number was not above the last one seen for the key. */
  readonly orderViolations: number
  /**
   * The worst of those: how many sequence numbers behind the newest event of its key already
   * delivered, and how many ms after that newer event it arrived.
   */
  readonly worstOrderViolation: { readonly seqBehind: number; readonly msLate: number } | null
  /** Distinct events per server. */
  readonly perServer: ReadonlyArray<number>
  /** Arrival time (epoch ms) of the first and last distinct event; null when none arrived. */
  readonly firstAt: number | null
  readonly lastAt: number | null
  /** Mean request body size. */
  readonly meanBodyBytes: number
  readonly latency: LatencySummary | null
}

export type ReceiverProtocol = {
  /** Starts servers until there are `count`; answers every server's port, in order. */
  readonly listen: { readonly request: { readonly count: number }; readonly reply: ReadonlyArray<number> }
  /** Changes how the given servers (all when absent) answer. */
  readonly configure: {
    readonly request: { readonly servers?: ReadonlyArray<number>; readonly mode: ServerMode }
    readonly reply: void
  }
  /** Forgets everything received. */
  readonly reset: { readonly request: Record<string, never>; readonly reply: void }
  readonly summary: { readonly request: Record<string, never>; readonly reply: Summary }
  /** Arrival times (epoch ms) of the distinct events one server received, in arrival order. */
  readonly arrivals: { readonly request: { readonly server: number }; readonly reply: ReadonlyArray<number> }
}

/**
 * The part of the event payload the receivers read. The benchmark puts it in the event's
 * `data` (Sluice and the ceiling deliver the envelope as the body; the BullMQ worker posts
 * the same envelope).
 */
export interface Probe {
  /** When the producer published it (epoch ms, fractional). */
  readonly t: number
  /** The key and the sequence number within the key, for the order check. */
  readonly k?: string
  readonly s?: number
}
