/**
 * The NATS KV buckets the broker keeps small shared state in (health, delivered versions,
 * idempotency keys): opened the same way, and one test for a lost compare-and-set race.
 */
import type { JetStreamClient } from "@nats-io/jetstream"
import type { KV } from "@nats-io/kv"
import { Kvm } from "@nats-io/kv"

/** Creates the bucket, or binds to it when it exists; one value is kept per key. */
export const open = (
  js: JetStreamClient,
  name: string,
  options: { readonly description: string; readonly ttlMs?: number }
): Promise<KV> =>
  new Kvm(js).create(name, {
    history: 1,
    description: options.description,
    ...(options.ttlMs === undefined ? {} : { ttl: options.ttlMs })
  })

/** `create` found the key taken, or `update` found it changed since it was read. */
export const isConflict = (cause: unknown): boolean => /wrong last sequence|key exists/i.test(String(cause))
