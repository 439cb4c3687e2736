/** What the benchmark tells its baseline workers (ceilingWorker.ts, bullmqWorker.ts). */

/** The raw JetStream consumer: one durable pull consumer per destination. */
export interface CeilingConfig {
  readonly natsUrl: string
  readonly stream: string
  readonly destinations: ReadonlyArray<{ readonly consumer: string; readonly url: string }>
  /** Requests in flight per destination, as the destination's maxConcurrency in Sluice. */
  readonly concurrency: number
  readonly connectionsPerOrigin: number
}

/** The BullMQ worker: one queue, jobs naming their receiver. */
export interface BullmqConfig {
  readonly host: string
  readonly port: number
  readonly queue: string
  readonly urls: ReadonlyArray<string>
  /** Jobs in flight in total: destinations × the per-destination concurrency. */
  readonly concurrency: number
  readonly connectionsPerOrigin: number
}

/** A BullMQ job: the receiver to post to and the body (the same envelope Sluice delivers). */
export interface BullmqJob {
  readonly destination: number
  readonly body: string
}

export type CeilingProtocol = {
  readonly start: { readonly request: CeilingConfig; readonly reply: void }
}

export type BullmqProtocol = {
  readonly start: { readonly request: BullmqConfig; readonly reply: void }
}
