/**
 * The NATS KV buckets the broker keeps small shared state in (health, delivered versions,
 * idempotency keys): opened the same way, and one test for a lost compare-and-set race.
 */
import type { JetStreamClient } from "@nats-io/jetstream"
import type { KV, KvEntry } from "@nats-io/kv"
import { Kvm } from "@nats-io/kv"

/**
 * Creates the bucket, or binds to it when it exists; one value is kept per key, on as many
 * servers as the event stream (`SLUICE_STREAM_REPLICAS`), so a cluster keeps health, leases
 * and versions through the loss of a server just as it keeps the events.
 */
export const open = (
  js: JetStreamClient,
  name: string,
  options: { readonly description: string; readonly replicas: number; readonly ttlMs?: number }
): Promise<KV> =>
  new Kvm(js).create(name, {
    history: 1,
    replicas: options.replicas,
    description: options.description,
    ...(options.ttlMs === undefined ? {} : { ttl: options.ttlMs })
  })

/** `create` found the key taken, or `update` found it changed since it was read. */
export const isConflict = (cause: unknown): boolean => /wrong last sequence|key exists/i.test(String(cause))

/**
 * A live copy of a whole bucket: every key's current value, decoded (undecodable values and
 * deletions leave the key out). Resolves once the values stored at the call are in; the
 * copy then follows every change until `stop`.
 */
export const follow = async <A>(
  kv: KV,
  decode: (entry: KvEntry) => A | undefined
): Promise<{ readonly current: ReadonlyMap<string, A & { readonly revision: number }>; readonly stop: () => void }> => {
  const current = new Map<string, A & { readonly revision: number }>()
  const stored = (await kv.status()).values
  const entries = await kv.watch()
  let markLoaded: () => void = () => {}
  const loaded = new Promise<void>((resolve) => {
    markLoaded = resolve
  })
  if (stored === 0) markLoaded()
  void (async () => {
    for await (const entry of entries) {
      const value = entry.operation === "PUT" ? decode(entry) : undefined
      if (value === undefined) current.delete(entry.key)
      else current.set(entry.key, { ...value, revision: entry.revision })
      if (entry.isUpdate || entry.delta === 0) markLoaded()
    }
    markLoaded()
  })()
  await loaded
  return { current, stop: () => entries.stop() }
}
