/**
 * Several broker processes sharing the destinations (issue 9): three `sluice start` processes
 * on one nats-server and one Postgres database, delivering to a receiver that records which
 * process sent each request and when it was in flight. Throughout, it must never see two
 * requests of one ordered key in flight at once, nor one destination served by two processes
 * at once, nor a request from a process outside its lease; first deliveries of a key come in
 * version order; and every acknowledged event arrives.
 *
 * The tests run in order on one cluster, each going on from where the one before left it:
 * the destinations spread over the three → a pause sent to a process that does not run the
 * destination → SIGKILL of a process under load → it starts again and the destinations
 * rebalance onto it → the rate limits, checked over all of it → the leases, still in the
 * bucket after longer than it keeps an entry. Measurements are printed (`[multiProcess]`).
 */
import { expect, layer } from "@effect/vitest"
import { LeasePolicy, Leases } from "@sluice/broker"
import type { Destination } from "@sluice/protocol"
import { Context, Effect, Fiber, Layer, Ref } from "effect"
import { producer } from "../helpers/broker.js"
import type { BrokerCluster, Delivery, ExclusivityReceiver, LeaseWatch } from "../helpers/brokerCluster.js"
import {
  busiestSignedSecond,
  describeDelivery,
  keyOverlaps,
  maxInMixedWindow,
  orderBreaks,
  outsideTenure,
  overlappingTenures,
  repeats,
  senderOverlaps,
  startCluster,
  startExclusivityReceiver,
  tenures,
  watchLeases
} from "../helpers/brokerCluster.js"
import { consumerInfo, query, withJsm } from "../helpers/inspect.js"
import { tempNatsServer } from "../helpers/nats.js"
import { throwawayDatabase } from "../helpers/postgres.js"
import { maxInWindow } from "../helpers/windows.js"
import { waitForEffect } from "../helpers/waitFor.js"

/** SLUICE_LEASE_TTL of every process. */
const TTL_MS = 3_000
/** A lease round: every process renews, gives back and takes leases every third of the TTL. */
const ROUND_MS = TTL_MS / 3
const NAMES = ["broker-a", "broker-b", "broker-c"] as const
/** DestinationActor.ACK_WAIT_MS: what a killed process held comes back from JetStream after this. */
const ACK_WAIT_MS = 30_000

type RateLimit = Destination.Destination["rateLimit"]

interface Spec {
  readonly id: string
  readonly rateLimit: RateLimit
  readonly maxConcurrency: number
  /** Keys its events are spread over (each key's versions go up by one per event). */
  readonly keys: number
}

/** Six ordered destinations: two at the brief's 5/s, three at 20/s (so the load stays within a 2-core machine), one unlimited. */
const SPECS: ReadonlyArray<Spec> = [
  { id: "mp-slow-1", rateLimit: { perSecond: 5, burst: 5 }, maxConcurrency: 4, keys: 4 },
  { id: "mp-slow-2", rateLimit: { perSecond: 5, burst: 5 }, maxConcurrency: 4, keys: 4 },
  { id: "mp-bulk-1", rateLimit: { perSecond: 20, burst: 20 }, maxConcurrency: 4, keys: 8 },
  { id: "mp-bulk-2", rateLimit: { perSecond: 20, burst: 20 }, maxConcurrency: 4, keys: 8 },
  { id: "mp-bulk-3", rateLimit: { perSecond: 20, burst: 20 }, maxConcurrency: 4, keys: 8 },
  { id: "mp-fast", rateLimit: null, maxConcurrency: 8, keys: 16 }
]
const IDS = SPECS.map((s) => s.id)
const spec = (id: string) => SPECS.find((s) => s.id === id)!

/** An acknowledged publish. */
interface Published {
  readonly id: string
  readonly destination: string
  readonly key: string
  readonly version: number
}

/** What one test leaves the next. */
interface Story {
  /** `at`: just before the SIGKILL; `deadAt`: once its exit was seen (requests it sent may arrive in between). */
  killed?: { readonly name: string; readonly pid: number; readonly at: number; readonly deadAt: number; readonly destinations: ReadonlyArray<string> }
  joined?: { readonly at: number; readonly moved: ReadonlyArray<string> }
  /** Rate limits as they changed: the limit applies to starts from `from` on. */
  readonly limits: Map<string, Array<{ readonly from: number; readonly limit: RateLimit }>>
  readonly measured: Array<string>
}

class MultiProcess extends Context.Tag("test/MultiProcess")<
  MultiProcess,
  {
    readonly natsUrl: string
    readonly databaseUrl: string
    readonly cluster: BrokerCluster
    readonly leases: LeaseWatch
    readonly receiver: ExclusivityReceiver
    /** Publishes `count` events for `destination` (type `mp.<destination>`), keys in turn, versions going up. */
    readonly publish: (destination: string, count: number) => Effect.Effect<void>
    readonly published: () => ReadonlyArray<Published>
    /** Destinations the receiver answers slowly (400 ms), so requests are on the wire when a process dies. */
    readonly slow: Set<string>
    readonly story: Story
  }
>() {}

const setup = Layer.scoped(
  MultiProcess,
  Effect.gen(function* () {
    const nats = yield* tempNatsServer
    const databaseUrl = yield* throwawayDatabase
    const cluster = yield* startCluster({
      natsUrl: nats.url,
      databaseUrl,
      names: NAMES,
      env: { SLUICE_LEASE_TTL: `${TTL_MS / 1000} seconds`, SLUICE_ALLOW_PRIVATE_DESTINATIONS: "true" }
    })
    const leases = yield* watchLeases(nats.url)
    // 10–40 ms per answer: long enough that a second request of a key would be seen overlapping.
    const slow = new Set<string>()
    const receiver = yield* startExclusivityReceiver({
      identify: cluster.identify,
      delayMs: (destination) => (slow.has(destination) ? 400 : 10 + Math.floor(Math.random() * 30))
    })
    const sluice = yield* producer(nats.url)
    const client = cluster.process(NAMES[0]).client
    const story: Story = { limits: new Map(), measured: [] }
    const createdAt = Date.now()
    for (const s of SPECS) {
      yield* client.destinations.create({
        payload: {
          id: s.id,
          url: `${receiver.url}/d/${s.id}`,
          subscriptions: [`mp.${s.id}`],
          ordering: "key",
          maxConcurrency: s.maxConcurrency,
          rateLimit: s.rateLimit
        }
      })
      story.limits.set(s.id, [{ from: createdAt, limit: s.rateLimit }])
    }

    const published: Array<Published> = []
    const sent = new Map<string, number>()
    const versions = new Map<string, number>()
    // One publish at a time: versions are handed out in the order the events reach the stream.
    const lock = yield* Effect.makeSemaphore(1)
    const publish = (destination: string, count: number) =>
      lock.withPermits(1)(
        Effect.gen(function* () {
          const batch = Array.from({ length: count }, () => {
            const n = sent.get(destination) ?? 0
            sent.set(destination, n + 1)
            const key = `k${n % spec(destination).keys}`
            const version = (versions.get(`${destination}/${key}`) ?? 0) + 1
            versions.set(`${destination}/${key}`, version)
            return { destination, key, version }
          })
          const results = yield* sluice
            .publishMany(batch.map((e) => ({ type: `mp.${destination}`, key: e.key, version: e.version, data: { at: Date.now() } })))
            .pipe(Effect.orDie)
          results.forEach((result, i) => published.push({ ...batch[i]!, id: result.id }))
        })
      )
    return { natsUrl: nats.url, databaseUrl, cluster, leases, receiver, publish, published: () => published, slow, story }
  })
)

// ---------------------------------------------------------------------------------------------
// Helpers of the tests

const waitUntil = <A>(condition: () => A, description: string | (() => string), timeoutMs: number) =>
  waitForEffect(Effect.sync(condition), { description, timeoutMs, intervalMs: 50 })

const countBy = <A>(items: Iterable<A>, key: (a: A) => string): Map<string, number> => {
  const counts = new Map<string, number>()
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1)
  return counts
}

/** Events published for `destination` (all when absent) that it has not received. */
const missing = (env: MultiProcess["Type"], destination?: string): ReadonlyArray<Published> => {
  const received = new Set(env.receiver.deliveries().map((d) => `${d.destination}\u0000${d.eventId}`))
  return env.published().filter((p) => (destination === undefined || p.destination === destination) && !received.has(`${p.destination}\u0000${p.id}`))
}

/** Waits until every acknowledged event has arrived; on timeout says which did not, and what the history says of them. */
const everyEventDelivered = (env: MultiProcess["Type"], timeoutMs: number) =>
  waitUntil(() => missing(env).length === 0, () => {
    const gone = missing(env)
    return `every acknowledged event delivered; ${gone.length} missing: ${gone.slice(0, 10).map((p) => `${p.destination} ${p.key} v${p.version}`).join(", ")}`
  }, timeoutMs).pipe(
    Effect.tapError(() =>
      query(env.databaseUrl, (sql) =>
        sql<Array<{ destination_id: string; state: string; n: number }>>`
          select destination_id, state, count(*)::int as n from deliveries
          where event_id in ${sql(missing(env).slice(0, 500).map((p) => p.id))} group by 1, 2`
      ).pipe(Effect.flatMap((rows) => Effect.logError("history of the missing events", rows)))
    )
  )

/** Leases in force (by the watch) that the bucket itself no longer holds as such. */
const leasesNotStored = (env: MultiProcess["Type"]) =>
  Effect.forEach(env.leases.holders(), ([id, lease]) =>
    env.leases.stored(id).pipe(
      Effect.map((stored) =>
        stored?.owner === lease.owner
          ? []
          : [`${id}: ${lease.name} holds it (its membership in force, its actor running) but sluice_leases holds ${stored === undefined ? "no lease" : `${stored.name}'s`}`]
      )
    )
  ).pipe(Effect.map((lists) => lists.flat()))

/** The checks that hold at every moment: no overlap per key or per destination, order, leases. */
const exclusive = (env: MultiProcess["Type"]) =>
  Effect.gen(function* () {
    // Every lease a process runs on is in the bucket, where a starting process looks (a lease
    // being handed over or taken may disagree for a moment).
    const agreed = yield* waitForEffect(leasesNotStored(env).pipe(Effect.map((problems) => problems.length === 0)), {
      timeoutMs: 3_000,
      intervalMs: 200
    }).pipe(Effect.option)
    const notStored = agreed._tag === "Some" ? [] : yield* leasesNotStored(env)
    yield* env.receiver.identified
    const deliveries = env.receiver.deliveries()
    const held = tenures(env.leases)
    const unidentified = deliveries.filter((d) => d.sender === undefined)
    expect({
      keyOverlaps: keyOverlaps(deliveries),
      senderOverlaps: senderOverlaps(deliveries),
      orderBreaks: orderBreaks(deliveries),
      outsideTenure: outsideTenure(deliveries, held),
      overlappingLeases: overlappingTenures(held),
      notStored
    }).toEqual({ keyOverlaps: [], senderOverlaps: [], orderBreaks: [], outsideTenure: [], overlappingLeases: [], notStored: [] })
    // The sender checks above mean something only if senders are known: a request's sender
    // can only stay unknown when its process died right after connecting.
    expect(unidentified.map(describeDelivery).slice(0, 10), `${unidentified.length} of ${deliveries.length} requests with no known sender`).toEqual(
      unidentified.filter((d) => d.cut).map(describeDelivery).slice(0, 10)
    )
    return deliveries
  })

const groupBy = <A>(items: ReadonlyArray<A>, key: (a: A) => string): Map<string, Array<A>> => {
  const groups = new Map<string, Array<A>>()
  for (const item of items) groups.set(key(item), [...(groups.get(key(item)) ?? []), item])
  return groups
}

/** Names holding leases now, with how many each. */
const shares = (leases: LeaseWatch) => countBy(leases.holders().values(), (lease) => lease.name)

/** What each process printed last, for a failure nothing else explains. */
const brokerLogs = (env: MultiProcess["Type"]) =>
  Effect.sync(() => {
    for (const name of NAMES) {
      const tail = (text: string) => text.trimEnd().split("\n").slice(-80).join("\n")
      console.log(`--- ${name} stdout (end) ---\n${tail(env.cluster.process(name).stdout())}\n--- stderr (end) ---\n${tail(env.cluster.process(name).stderr())}`)
    }
  })

/** For a failure: the processes' logs, the bucket changes and the latest requests of each destination since `since`. */
const diagnose = (env: MultiProcess["Type"], since: number) =>
  Effect.gen(function* () {
    yield* brokerLogs(env)
    const time = (ms: number) => new Date(ms).toISOString().slice(11, 23)
    const names = new Map(Array.from(env.leases.members(), ([id, m]) => [id, m.name]))
    console.log(
      "--- lease changes ---\n" +
        env.leases
          .leaseChanges()
          .filter((c) => c.at >= since)
          .map((c) => `${time(c.at)} ${c.key} #${c.revision} ${c.value === undefined ? "deleted" : `${c.value.name} (${c.value.owner})`}`)
          .join("\n")
    )
    console.log(
      "--- members ---\n" +
        Array.from(env.leases.members(), ([id, m]) => `${id} ${m.name} expires ${time(m.expiresAt)} wants ${m.wants}`).join("\n") +
        `\n(${names.size} announced)`
    )
    for (const id of IDS) {
      const recent = env.receiver.deliveries().filter((d) => d.destination === id && d.start >= since)
      console.log(`--- ${id}: ${recent.length} requests since; last: ${recent.slice(-3).map(describeDelivery).join("; ")}; waiting ${missing(env, id).length}`)
    }
  })

const log = (story: Story, line: string) =>
  Effect.sync(() => {
    story.measured.push(line)
    console.log(`[multiProcess] ${line}`)
  })

/**
 * Keeps each of `ids` busy: whenever fewer than its backlog (two seconds of work at its rate
 * limit) wait, publishes as many again — so the destinations are mid-delivery whenever the
 * cluster changes, without publishing more than they can drain. Runs until `stop`.
 */
const keepBusy = (env: MultiProcess["Type"], ids: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const running = yield* Ref.make(true)
    const backlog = (id: string) => {
      const limit = env.story.limits.get(id)!.at(-1)!.limit
      return limit === null ? 80 : Math.max(10, limit.perSecond * 2)
    }
    const round = Effect.forEach(ids, (id) => {
      const waiting = missing(env, id).length
      return waiting < backlog(id) / 2 ? env.publish(id, backlog(id)) : Effect.void
    }, { discard: true })
    const fiber = yield* Effect.fork(
      Effect.gen(function* () {
        while (yield* Ref.get(running)) {
          yield* round
          yield* Effect.sleep("100 millis")
        }
      })
    )
    // Stopped between rounds, never mid-publish: every event sent is acknowledged and counted.
    return Ref.set(running, false).pipe(Effect.zipRight(Fiber.join(fiber)))
  })

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`

layer(setup, { timeout: "180 seconds", excludeTestServices: true })("several broker processes", (it) => {
  it.effect(
    "the destinations spread over the three processes; all deliver, never one key twice at once, keys in order",
    () =>
      Effect.gen(function* () {
        const env = yield* MultiProcess
        // Fair shares: six destinations, three processes, two leases each.
        yield* waitUntil(
          () => {
            const counts = shares(env.leases)
            return NAMES.every((name) => counts.get(name) === 2)
          },
          () => `two leases held by each process; held: ${JSON.stringify(Object.fromEntries(shares(env.leases)))}`,
          30_000
        ).pipe(Effect.tapError(() => brokerLogs(env)))
        for (const s of SPECS) yield* env.publish(s.id, s.rateLimit === null ? 300 : s.rateLimit.perSecond * 3)
        yield* everyEventDelivered(env, 60_000)

        const deliveries = yield* exclusive(env)
        // Each destination was delivered by the process holding its lease, and each process delivered.
        const holders = env.leases.holders()
        const bySender = countBy(deliveries, (d) => `${d.destination} by ${d.sender?.name}`)
        expect(Array.from(bySender.keys()).sort()).toEqual(IDS.map((id) => `${id} by ${holders.get(id)?.name}`).sort())
        expect(new Set(deliveries.map((d) => d.sender?.name))).toEqual(new Set(NAMES))
        expect(repeats(deliveries)).toEqual([])
        yield* log(env.story, `spread: ${IDS.map((id) => `${id}→${holders.get(id)?.name}`).join(", ")}; ${deliveries.length} requests`)
      }),
    120_000
  )

  it.effect(
    "a pause sent to a process that does not run the destination stops its deliveries at once; a resume sent to the third restarts them",
    () =>
      Effect.gen(function* () {
        const env = yield* MultiProcess
        const target = "mp-bulk-1"
        const control = "mp-bulk-2"
        const owner = env.leases.holders().get(target)!
        const [pauser, resumer] = NAMES.filter((name) => name !== owner.name)
        const before = env.receiver.deliveries().length
        const onTarget = (from: number) => env.receiver.deliveries().slice(from).filter((d) => d.destination === target)

        // Four seconds of work at 20/s; paused once it is flowing.
        yield* env.publish(target, 80)
        yield* waitUntil(() => onTarget(before).length >= 10, `${target} delivering`, 20_000)
        const pauseSentAt = Date.now()
        yield* env.cluster.process(pauser!).client.destinations.pause({ path: { id: target } })
        const pausedAt = Date.now()
        const afterPause = env.receiver.deliveries().length

        // What shows the pause holds: the control destination receives what is published after
        // it, and the owner renews the paused destination's lease twice (it still runs it).
        yield* env.publish(target, 20)
        yield* env.publish(control, 20)
        const renewals = () => env.leases.memberChanges().filter((c) => c.key === owner.owner && c.at > pausedAt && c.value !== undefined).length
        yield* waitUntil(
          () =>
            missing(env, control).length === 0 &&
            renewals() >= 2 &&
            env.leases.holders().get(target)?.owner === owner.owner &&
            env.receiver.inFlight().every((d) => d.destination !== target),
          () => `${control} caught up (${missing(env, control).length} missing), ${owner.name} renewed its membership twice (${renewals()}) still holding ${target}`,
          20_000
        )
        const started = onTarget(before)
        const lastStart = Math.max(...started.map((d) => d.start))
        const startedAfter = started.filter((d) => d.start > pausedAt)
        const info = yield* consumerInfo(env.natsUrl, target)
        yield* log(
          env.story,
          `pause via ${pauser} (owner ${owner.name}): API answered in ${pausedAt - pauseSentAt} ms; last request start ${lastStart - pausedAt} ms after the answer; ` +
            `${startedAfter.length} started after it; ${missing(env, target).length} events waiting (${info.num_ack_pending} held by the actor, ${info.num_pending} not yet pulled), ` +
            `observed for ${Date.now() - pausedAt} ms`
        )
        // Requests in flight finish; nothing new starts once the owner has seen the pause (well within a second).
        expect(startedAfter.filter((d) => d.start > pausedAt + 1_000).map(describeDelivery)).toEqual([])
        expect(missing(env, target).length).toBeGreaterThan(0)
        for (const name of NAMES) {
          const view = yield* env.cluster.process(name).client.destinations.get({ path: { id: target } })
          expect(view.health.state, `health of ${target} as ${name} sees it`).toBe("paused")
        }

        const resumeSentAt = Date.now()
        yield* env.cluster.process(resumer!).client.destinations.resume({ path: { id: target } })
        const resumedAt = Date.now()
        const firstAfter = yield* waitUntil(
          () => env.receiver.deliveries().slice(afterPause).find((d) => d.destination === target && d.start > resumedAt),
          `${target} delivering again after the resume via ${resumer}`,
          10_000
        )
        yield* log(
          env.story,
          `resume via ${resumer}: API answered in ${resumedAt - resumeSentAt} ms; first request ${firstAfter.start - resumedAt} ms after the answer`
        )
        expect(firstAfter.sender?.name).toBe(owner.name)
        // "Within a second wherever the API call landed" (issue 9); the held events go first.
        expect(firstAfter.start - resumedAt).toBeLessThanOrEqual(1_000)
        yield* everyEventDelivered(env, 30_000)
        yield* exclusive(env)
        expect(repeats(env.receiver.deliveries())).toEqual([])
      }),
    90_000
  )

  it.effect(
    "SIGKILL of a process under load: the two others take its destinations over within the TTL and a round; nothing acknowledged is lost, repeats only of what it had on the wire",
    () =>
      Effect.gen(function* () {
        const env = yield* MultiProcess
        // The victim runs a 5/s destination, so the rate limit is carried across a takeover too.
        const victim = env.leases.holders().get("mp-slow-1")!.name
        const theirs = IDS.filter((id) => env.leases.holders().get(id)?.name === victim)
        const before = env.receiver.deliveries().length
        const stop = yield* keepBusy(env, IDS)

        // Under load: each of its destinations delivering; then answered slowly, so requests
        // of it are on the wire when it dies.
        yield* waitUntil(
          () => theirs.every((id) => env.receiver.deliveries().slice(before).filter((d) => d.destination === id).length >= 5),
          `${victim} delivering ${theirs.join(", ")}`,
          30_000
        )
        for (const id of theirs) env.slow.add(id)
        yield* waitUntil(
          () => theirs.every((id) => env.receiver.inFlight().some((d) => d.destination === id && d.sender?.name === victim)),
          `requests of ${theirs.join(", ")} in flight from ${victim}`,
          10_000
        )
        const pid = env.receiver.inFlight().find((d) => d.sender?.name === victim)!.sender!.pid
        const killedAt = Date.now()
        const exit = yield* env.cluster.kill(victim)
        const deadAt = Date.now()
        expect(exit.signal).toBe("SIGKILL")
        env.story.killed = { name: victim, pid, at: killedAt, deadAt, destinations: theirs }
        env.slow.clear()

        // Failover: the survivors hold its destinations' leases.
        yield* waitUntil(
          () => theirs.every((id) => { const name = env.leases.holders().get(id)?.name; return name !== undefined && name !== victim }),
          () => `${theirs.join(", ")} held by the survivors; holders: ${JSON.stringify(Object.fromEntries(Array.from(env.leases.holders(), ([id, l]) => [id, l.name])))}`,
          TTL_MS + 10 * ROUND_MS
        )
        const seenAt = Date.now()
        const takeovers = theirs.map((id) => {
          const first = env.leases.leaseChanges().find((c) => c.key === id && c.at > killedAt && c.value !== undefined && c.value.name !== victim)!
          return { id, by: first.value!.name, acquiredAt: first.at }
        })
        const failoverMs = Math.max(...takeovers.map((t) => t.acquiredAt)) - killedAt
        yield* stop
        // What went wrong first, before waiting for the rest.
        yield* exclusive(env).pipe(Effect.tapErrorCause(() => diagnose(env, killedAt - 5_000)))

        // Then everything: what the victim held comes back after the ack wait; the new owners
        // of its ordered destinations wait for that before delivering.
        yield* everyEventDelivered(env, TTL_MS + ACK_WAIT_MS + 40_000)
        const deliveries = yield* exclusive(env)
        const inFlightAtKill = deliveries.filter((d) => d.sender?.pid === pid && d.cut).length
        const resumed = theirs.map((id) => {
          const first = deliveries.find((d) => d.destination === id && d.start > killedAt && d.sender?.pid !== pid)
          return `${id}: taken by ${takeovers.find((t) => t.id === id)!.by} after ${seconds(takeovers.find((t) => t.id === id)!.acquiredAt - killedAt)}, delivering again after ${first === undefined ? "—" : seconds(first.start - killedAt)}`
        })
        yield* log(
          env.story,
          `SIGKILL of ${victim} (pid ${pid}, ${inFlightAtKill} requests cut): failover ${seconds(failoverMs)} (leases seen held by survivors after ${seconds(seenAt - killedAt)}); ${resumed.join("; ")}`
        )
        // The TTL (the lease runs out), a round (someone notices), and a margin: one more round
        // for a survivor that lost the compare-and-set to the other, and a second for a busy machine.
        expect(failoverMs).toBeLessThanOrEqual(TTL_MS + ROUND_MS + ROUND_MS + 1_000)

        // Repeats: only requests the victim had on the wire (its response never processed, so
        // never remembered as delivered) — at most maxConcurrency per destination, one per key.
        const again = repeats(deliveries)
        const bound = theirs.reduce((sum, id) => sum + Math.min(spec(id).maxConcurrency, spec(id).keys), 0)
        yield* log(env.story, `repeats after the kill: ${again.length} (bound ${bound}): ${again.map((r) => describeDelivery(r.again)).join("; ")}`)
        expect(again.length).toBeLessThanOrEqual(bound)
        for (const { first, again: copy } of again) {
          expect({ firstBy: first.sender?.pid, firstBeforeKill: first.start <= deadAt, copyAfterKill: copy.start > deadAt }).toEqual({
            firstBy: pid,
            firstBeforeKill: true,
            copyAfterKill: true
          })
        }

        // Audited: a takeover per destination, by the process that took it; no process lost a lease it still ran.
        const audit = yield* waitForEffect(
          env.cluster.process(takeovers[0]!.by).client.audit.list({ urlParams: { limit: 500 } }).pipe(
            Effect.map((page) => {
              const taken = page.items.filter((e) => e.action === "destination.taken_over")
              return theirs.every((id) => taken.some((e) => e.destinationId === id)) && page.items
            })
          ),
          { description: "the takeovers in the audit log", timeoutMs: 20_000 }
        )
        expect(
          audit
            .filter((e) => e.action === "destination.taken_over")
            .map((e) => ({ destination: e.destinationId, actor: e.actor, from: (e.details as { from?: string }).from }))
            .sort((a, b) => String(a.destination).localeCompare(String(b.destination)))
        ).toEqual(takeovers.map((t) => ({ destination: t.id, actor: t.by, from: victim })).sort((a, b) => a.destination.localeCompare(b.destination)))
        expect(audit.filter((e) => e.action === "destination.lease_lost")).toEqual([])
      }),
    150_000
  )

  it.effect(
    "the killed process starts again: two destinations move onto it, handed over (never running in two processes), nothing lost or repeated",
    () =>
      Effect.gen(function* () {
        const env = yield* MultiProcess
        const killed = env.story.killed!
        // Each survivor holds three (after a takeover one may have taken both and handed one on)
        // and gives back, once the newcomer asks, its lowest by rendezvous weight (LeasePolicy).
        yield* waitUntil(
          () => Array.from(shares(env.leases).values()).join() === "3,3",
          () => `three leases held by each survivor; held: ${JSON.stringify(Object.fromEntries(shares(env.leases)))}`,
          15_000
        )
        const holders = env.leases.holders()
        const survivors = new Set(Array.from(holders.values(), (lease) => lease.owner))
        const predicted = Array.from(survivors, (owner) => {
          const mine = IDS.filter((id) => holders.get(id)?.owner === owner)
          return [...mine].sort((a, b) => LeasePolicy.weight(owner, a) - LeasePolicy.weight(owner, b) || (a < b ? -1 : 1))[0]!
        }).sort()

        // One of the movers limited to 5/s, through a process that does not run it: the rate
        // limit is then checked across a handover too, and a config change reaches its owner.
        const limited = predicted.find((id) => env.story.limits.get(id)!.at(-1)!.limit?.perSecond === 5) ?? predicted[0]!
        if (env.story.limits.get(limited)!.at(-1)!.limit?.perSecond !== 5) {
          const via = NAMES.find((name) => name !== holders.get(limited)!.name && name !== killed.name)!
          yield* env.cluster.process(via).client.destinations.update({
            path: { id: limited },
            payload: { rateLimit: { perSecond: 5, burst: 5 } }
          })
          // "Within a second wherever the API call landed": checked from a second after the change.
          env.story.limits.get(limited)!.push({ from: Date.now() + 1_000, limit: { perSecond: 5, burst: 5 } })
          yield* log(env.story, `${limited} limited to 5/s via ${via} (owner ${holders.get(limited)!.name})`)
        }

        const before = env.receiver.deliveries().length
        const repeatsBefore = repeats(env.receiver.deliveries()).length
        const changesBefore = env.leases.leaseChanges().length
        const stop = yield* keepBusy(env, IDS)
        const startedAt = Date.now()
        const joiner = yield* env.cluster.restart(killed.name)
        const readyAt = Date.now()
        const joinerOwns = () => IDS.filter((id) => env.leases.holders().get(id)?.name === killed.name)
        yield* waitUntil(
          () => {
            const own = joinerOwns()
            const recent = env.receiver.deliveries().slice(before)
            return own.length === 2 && own.every((id) => recent.filter((d) => d.destination === id && d.sender?.name === killed.name).length >= 5)
          },
          () => `${killed.name} holding two destinations and delivering them; it holds ${joinerOwns().join(", ") || "none"}`,
          // An ordered destination whose consumer still counts messages out starts after an ack wait.
          ACK_WAIT_MS + 20_000
        ).pipe(Effect.tapError(() => diagnose(env, startedAt)))
        const rebalancedAt = Date.now()
        yield* stop
        const moved = joinerOwns().sort()
        env.story.joined = { at: startedAt, moved }
        const handovers = moved.map((id) => {
          const mine = env.leases.leaseChanges().slice(changesBefore).filter((c) => c.key === id)
          const released = mine.find((c) => c.value === undefined)
          const taken = mine.find((c) => c.value?.name === killed.name)
          const first = env.receiver.deliveries().find((d) => d.destination === id && d.sender?.name === killed.name && d.start >= startedAt)
          const at = (ms: number | undefined) => (ms === undefined || released === undefined ? "—" : seconds(ms - released.at))
          return `${id}: released by ${holders.get(id)?.name}, taken ${at(taken?.at)} later, first delivery ${at(first?.start)} after the release`
        })
        yield* log(
          env.story,
          `${killed.name} restarted (ready after ${seconds(readyAt - startedAt)}); took ${moved.join(", ")} (predicted ${predicted.join(", ")}), ` +
            `delivering both ${seconds(rebalancedAt - readyAt)} after its banner; ${handovers.join("; ")}`
        )
        yield* exclusive(env).pipe(Effect.tapErrorCause(() => diagnose(env, startedAt - 60_000)))
        yield* everyEventDelivered(env, 60_000)
        const deliveries = yield* exclusive(env)

        expect(moved).toEqual(predicted)
        expect(Array.from(shares(env.leases).values())).toEqual([2, 2, 2])
        // Handed over, not taken over: each moved lease was deleted by its holder before the newcomer wrote it.
        const changes = env.leases.leaseChanges().slice(changesBefore)
        for (const id of moved) {
          const mine = changes.filter((c) => c.key === id)
          const taken = mine.findIndex((c) => c.value?.name === killed.name)
          expect(taken, `${id}: ${killed.name} wrote its lease`).toBeGreaterThan(0)
          expect(mine[taken - 1]!.value, `${id}: the change before ${killed.name} took it`).toBeUndefined()
        }
        // A clean handover repeats nothing.
        expect(repeats(deliveries).length).toBe(repeatsBefore)
        const audit = yield* joiner.client.audit.list({ urlParams: { limit: 500 } })
        expect(audit.items.filter((e) => e.action === "destination.taken_over" && Date.parse(e.at) > startedAt)).toEqual([])
      }),
    150_000
  )

  it.effect(
    "rate limits hold in every one-second window, across the takeover and the rebalance",
    () =>
      Effect.gen(function* () {
        const env = yield* MultiProcess
        const { killed, joined } = env.story
        expect(killed !== undefined && joined !== undefined).toBe(true)
        // (Overlaps, order and leases are asserted by the tests before; this one is about rates.)
        yield* env.receiver.identified
        const deliveries = env.receiver.deliveries()
        // When each request started, as the broker recorded it (its rate slot). A request the
        // killed process had on the wire is not recorded; its repeat may carry the same attempt
        // number, so records go to the latest requests of their event and attempt.
        const recordedStarts = (rows: ReadonlyArray<{ destination_id: string; event_id: string; attempt: number; started_at: Date }>) => {
          const rowsOf = groupBy(rows, (r) => `${r.destination_id}/${r.event_id}/${r.attempt}`)
          const startOf = new Map<Delivery, number>()
          for (const [key, requests] of groupBy(deliveries, (d) => `${d.destination}/${d.eventId}/${d.attempt}`)) {
            const recorded = (rowsOf.get(key) ?? []).map((r) => r.started_at.getTime()).sort((a, b) => a - b)
            const latest = [...requests].sort((a, b) => a.start - b.start).slice(-recorded.length || requests.length)
            if (recorded.length > 0) latest.forEach((d, i) => startOf.set(d, recorded[i]!))
          }
          return startOf
        }
        const startOf = yield* waitForEffect(
          query(env.databaseUrl, (sql) =>
            sql<Array<{ destination_id: string; event_id: string; attempt: number; started_at: Date }>>`
              select destination_id, event_id, attempt, started_at from attempts`
          ).pipe(
            Effect.map((rows) => {
              const starts = recordedStarts(rows)
              // Every request a live process sent is in the history; only the killed one's cut requests are not.
              return deliveries.every((d) => starts.has(d) || d.sender?.pid === killed!.pid) && starts
            })
          ),
          { description: "every attempt of a live process in the history", timeoutMs: 30_000 }
        )

        const report: Array<string> = []
        const problems: Array<string> = []
        for (const id of IDS) {
          const segments = env.story.limits.get(id)!
          for (const [i, segment] of segments.entries()) {
            const limit = segment.limit
            if (limit === null) continue
            const until = segments[i + 1]?.from ?? Infinity
            const mine = deliveries.filter((d) => d.destination === id && d.start >= segment.from && d.start < until)
            const windowMs = (1_000 * limit.burst) / limit.perSecond
            // The broker's start times: the recorded start, or for a request the killed process
            // never recorded, its arrival (later than its start, so never a false excess).
            const timed = mine.map((d) => ({ d, at: startOf.get(d) ?? d.start, sender: d.sender?.pid })).sort((a, b) => a.at - b.at)
            const starts = timed.map((t) => t.at)
            const strict = maxInWindow(starts, windowMs)
            const mixed = maxInMixedWindow(timed, windowMs)
            // What the receiver saw: arrivals wander by however long each took to get here, so
            // windows are narrowed by the spread of that delay.
            const delays = timed.flatMap(({ d }) => (startOf.has(d) ? [d.start - startOf.get(d)!] : []))
            const spread = delays.length === 0 ? 0 : Math.max(...delays) - Math.min(...delays)
            const atReceiver = maxInWindow(mine.map((d) => d.start), Math.max(1, windowMs - spread))
            const atReceiverRaw = maxInWindow(mine.map((d) => d.start), windowMs)
            let tightest = 0
            for (let j = limit.burst; j < timed.length; j++) {
              if (timed[j]!.at - timed[j - limit.burst]!.at < timed[tightest + limit.burst]!.at - timed[tightest]!.at) tightest = j - limit.burst
            }
            const run = timed.slice(tightest, tightest + limit.burst + 1)
            const tightestMs = run.length > limit.burst ? run.at(-1)!.at - run[0]!.at : Infinity
            report.push(
              `${id} ${limit.perSecond}/s burst ${limit.burst}: ${mine.length} requests from ${new Set(timed.map((t) => t.sender)).size} processes; ` +
                `most starts in ${windowMs} ms: ${strict} (${mixed} where two processes' starts meet), ` +
                `tightest ${limit.burst + 1} starts ${tightestMs} ms apart; by arrival ${atReceiverRaw} (${atReceiver} in ${windowMs - spread} ms windows, arrival spread ${spread} ms); ` +
                `most signed in one second: ${busiestSignedSecond(mine).count}`
            )
            const where = () =>
              run.map(({ d, at }) => `${new Date(at).toISOString().slice(17, 23)} ${d.sender?.name}/${d.sender?.pid}${startOf.has(d) ? "" : " (arrival)"}`).join(", ")
            if (mixed > limit.burst) problems.push(`${id}: ${mixed} starts in ${windowMs} ms across a change of process`)
            if (strict > limit.burst) problems.push(`${id}: ${strict} starts in ${windowMs} ms: ${where()}`)
            if (atReceiver > limit.burst) problems.push(`${id}: ${atReceiver} arrivals in ${windowMs - spread} ms`)
          }
        }
        for (const line of report) yield* log(env.story, line)
        expect(problems).toEqual([])

        // The limits were tested where it matters: a 5/s destination ran in the killed process
        // and was taken over, and a 5/s one moved in the rebalance, both busy at the time.
        const fiveAt = (id: string, at: number) => env.story.limits.get(id)!.filter((s) => s.from <= at).at(-1)?.limit?.perSecond === 5
        expect(killed!.destinations.some((id) => fiveAt(id, killed!.at))).toBe(true)
        expect(joined!.moved.some((id) => fiveAt(id, Date.now()))).toBe(true)
        const busy = (id: string, from: number, to: number) => deliveries.filter((d) => d.destination === id && d.start >= from && d.start < to).length
        for (const id of killed!.destinations.filter((d) => fiveAt(d, killed!.at))) {
          expect(busy(id, killed!.at - 2_000, killed!.at), `${id} requests in the 2 s before the kill`).toBeGreaterThanOrEqual(5)
        }
      }),
    60_000
  )

  it.effect(
    "a lease outlives the lease bucket's max age: a process that runs a destination longer than that still holds it in the bucket",
    () =>
      Effect.gen(function* () {
        const env = yield* MultiProcess
        // Leases are no longer rewritten every round (the membership is): an entry the bucket
        // drops for its age leaves a running destination free for any process that reads the
        // bucket afresh — a starting one takes it while its holder still runs it.
        const info = yield* withJsm(env.natsUrl, (jsm) => jsm.streams.info(`KV_${Leases.LEASES_BUCKET}`))
        const maxAgeMs = info.config.max_age / 1_000_000
        const oldest = () => Math.min(...tenures(env.leases).filter((t) => t.until === Infinity).map((t) => t.from))
        if (maxAgeMs > 0) {
          yield* waitUntil(() => Date.now() - oldest() > maxAgeMs + ROUND_MS, `a lease held for longer than ${maxAgeMs} ms`, maxAgeMs + 10_000)
        }
        const notStored = yield* leasesNotStored(env)
        yield* log(
          env.story,
          `lease bucket max age ${maxAgeMs === 0 ? "none" : seconds(maxAgeMs)}; oldest lease in force taken ${seconds(Date.now() - oldest())} ago; in force but not stored: ${notStored.length}`
        )
        yield* log(env.story, `summary:\n  ${env.story.measured.join("\n  ")}`)
        expect(notStored).toEqual([])
      }),
    90_000
  )
})
