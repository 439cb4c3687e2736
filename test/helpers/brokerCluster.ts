/**
 * Several `sluice start` processes sharing one nats-server and one history database, for
 * the multi-process fault tests, and what those tests watch them with:
 *
 * - the cluster: processes started in parallel, killed and restarted by name;
 * - the lease and member buckets (`sluice_leases`, `sluice_members`), followed change by
 *   change, so a test can say who held each destination when, and how long a takeover took;
 * - a receiver that records, per request, when it was in flight and which broker process sent
 *   it (found from the socket: /proc/net/tcp gives the sender's socket inode, /proc/<pid>/fd
 *   which process holds it), so overlapping deliveries are caught where they land;
 * - pure checks over what the receiver recorded: overlaps per key and per destination,
 *   per-key order, repeats, requests outside the sender's lease, starts per time window.
 *
 * Linux only (/proc), as the machines these tests run on.
 */
import { jetstream } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"
import type { LeasePolicy } from "@sluice/broker"
import { KvBucket, Leases } from "@sluice/broker"
import { Effect, Scope } from "effect"
import { randomBytes } from "node:crypto"
import { readdir, readFile, readlink } from "node:fs/promises"
import type { IncomingMessage } from "node:http"
import { createServer } from "node:http"
import type { AddressInfo, Socket } from "node:net"
import type { BrokerProcess, BrokerProcessFailed, ProcessExit } from "./brokerProcess.js"
import { startBrokerProcess } from "./brokerProcess.js"

// ---------------------------------------------------------------------------------------------
// The processes

export interface ClusterOptions {
  readonly natsUrl: string
  readonly databaseUrl: string
  /** One process per name, started in parallel; each is its SLUICE_PROCESS_NAME. */
  readonly names: ReadonlyArray<string>
  /** Further settings for every process (SLUICE_LEASE_TTL, …). */
  readonly env?: Readonly<Record<string, string>>
}

/** A broker process as the receiver identifies it. */
export interface Sender {
  readonly name: string
  readonly pid: number
}

export interface BrokerCluster {
  /** The process currently started under `name` (the latest after a restart). */
  readonly process: (name: string) => BrokerProcess
  readonly names: ReadonlyArray<string>
  /** SIGKILL to the process (group) called `name`; waits for its exit. */
  readonly kill: (name: string) => Effect.Effect<ProcessExit>
  /** Starts `name` again with the same settings and data directory (kill it first); a new instance for the leases. */
  readonly restart: (name: string) => Effect.Effect<BrokerProcess, BrokerProcessFailed>
  /**
   * Which of the cluster's processes holds the client end of the loopback TCP connection
   * `clientPort` → `serverPort`; undefined when none does (any more).
   */
  readonly identify: (clientPort: number, serverPort: number) => Promise<Sender | undefined>
}

/** `SLUICE_PROCESS_NAME=…` and `SLUICE_DATA_DIR=…` as the environment block of a process holds them. */
const environOf = (pid: number): Promise<ReadonlyMap<string, string>> =>
  readFile(`/proc/${pid}/environ`, "utf8").then(
    (text) =>
      new Map(
        text
          .split("\0")
          .filter((entry) => entry.startsWith("SLUICE_"))
          .map((entry) => [entry.slice(0, entry.indexOf("=")), entry.slice(entry.indexOf("=") + 1)] as const)
      ),
    () => new Map()
  )

const hex4 = (port: number) => port.toString(16).toUpperCase().padStart(4, "0")

/** The inode of the socket whose local end is 127.0.0.1:`clientPort` and remote end 127.0.0.1:`serverPort`. */
const socketInode = async (clientPort: number, serverPort: number): Promise<string | undefined> => {
  const local = `0100007F:${hex4(clientPort)}`
  const remote = `0100007F:${hex4(serverPort)}`
  const table = await readFile("/proc/net/tcp", "utf8").catch(() => "")
  for (const line of table.split("\n")) {
    const fields = line.trim().split(/\s+/)
    if (fields[1] === local && fields[2] === remote) return fields[9]
  }
  return undefined
}

const holdsSocket = async (pid: number, inode: string): Promise<boolean> => {
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as Array<string>)
  const target = `socket:[${inode}]`
  const links = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => "")))
  return links.includes(target)
}

/** Starts every named process at once; they (and their restarts) are killed when the scope closes. */
export const startCluster = (options: ClusterOptions): Effect.Effect<BrokerCluster, BrokerProcessFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    // Processes sharing a database must open each other's destination secrets: one key for all.
    const secretKey = randomBytes(32).toString("base64")
    const started = yield* Effect.forEach(
      options.names,
      (name) =>
        startBrokerProcess({
          natsUrl: options.natsUrl,
          databaseUrl: options.databaseUrl,
          env: { SLUICE_PROCESS_NAME: name, SLUICE_SECRET_KEY: secretKey, ...options.env }
        }).pipe(Effect.map((process) => [name, process] as const)),
      { concurrency: "unbounded" }
    )
    const processes = new Map<string, BrokerProcess>(started)
    /** Data directory → name: how a pid found in /proc is told apart (a restart keeps its directory). */
    const byDataDir = new Map(started.map(([name, process]) => [process.dataDir, name]))
    /** Live pids of the cluster as last found; searched again when a socket belongs to none of them. */
    let known: ReadonlyArray<Sender> = []
    const discover = async (): Promise<ReadonlyArray<Sender>> => {
      const pids = (await readdir("/proc")).filter((entry) => /^\d+$/.test(entry)).map(Number)
      const found = await Promise.all(
        pids.map(async (pid) => {
          const env = await environOf(pid)
          const name = byDataDir.get(env.get("SLUICE_DATA_DIR") ?? "")
          return name !== undefined && env.get("SLUICE_PROCESS_NAME") === name ? [{ name, pid }] : []
        })
      )
      known = found.flat()
      return known
    }
    const search = async (senders: ReadonlyArray<Sender>, inode: string) => {
      const holding = await Promise.all(senders.map((sender) => holdsSocket(sender.pid, inode)))
      return senders.find((_, i) => holding[i])
    }
    const process = (name: string) => {
      const found = processes.get(name)
      if (found === undefined) throw new Error(`no broker process called ${name}`)
      return found
    }
    return {
      names: options.names,
      process,
      kill: (name) => Effect.suspend(() => process(name).kill),
      restart: (name) =>
        Effect.suspend(() => process(name).restart).pipe(
          Effect.tap((restarted) => Effect.sync(() => processes.set(name, restarted))),
          Scope.extend(scope)
        ),
      identify: async (clientPort, serverPort) => {
        const inode = await socketInode(clientPort, serverPort)
        if (inode === undefined) return undefined
        return (await search(known, inode)) ?? (await search(await discover(), inode))
      }
    }
  })

// ---------------------------------------------------------------------------------------------
// The lease and member buckets

/** A lease and a member as the broker stores them (see `LeasePolicy`). */
export type Lease = LeasePolicy.Lease
export type Member = LeasePolicy.Member

/** A bucket as @nats-io/kv opens it (the test package reaches that library through the broker's `KvBucket`). */
type KV = Awaited<ReturnType<typeof KvBucket.open>>
type KvEntry = NonNullable<Awaited<ReturnType<KV["get"]>>>

/** One change of a bucket, stamped by the server when it was written. */
export interface Change<A> {
  /** The server's time of the write (ms): the same clock as the brokers' on one machine. */
  readonly at: number
  readonly key: string
  /** The stream sequence: what a compare-and-set names. */
  readonly revision: number
  /** The value written; undefined for a deletion (a lease given back, a process leaving). */
  readonly value: A | undefined
}

export interface LeaseWatch {
  /** Every change of `sluice_leases` since the watch started, oldest first; key = destination id. */
  readonly leaseChanges: () => ReadonlyArray<Change<Lease>>
  /** Every change of `sluice_members`, oldest first; key = instance id. */
  readonly memberChanges: () => ReadonlyArray<Change<Member>>
  /** Leases in force at `now` (default: now), by destination. */
  readonly holders: (now?: number) => ReadonlyMap<string, Lease>
  /** Announced processes by instance id, live or not. */
  readonly members: () => ReadonlyMap<string, Member>
  /**
   * The lease stored for `destination` now, read from the bucket (not the watch: a watch is not
   * told when JetStream drops an entry for its age); undefined when there is none.
   */
  readonly stored: (destination: string) => Effect.Effect<Lease | undefined>
}

const parse = <A>(entry: KvEntry): A | undefined => {
  if (entry.operation !== "PUT") return undefined
  try {
    return JSON.parse(entry.string()) as A
  } catch {
    return undefined
  }
}

/**
 * Follows the lease and member buckets through a connection of the test's own. Open it once
 * the brokers run: they create the buckets (with their max age), the watcher only binds.
 */
export const watchLeases = (natsUrl: string): Effect.Effect<LeaseWatch, never, Scope.Scope> =>
  Effect.gen(function* () {
    const nc = yield* Effect.acquireRelease(
      Effect.promise(() => connect({ servers: natsUrl, name: "multi-process-test-watcher" })),
      (nc) => Effect.promise(() => nc.close())
    )
    const js = jetstream(nc)
    // Binds to the bucket the brokers created; the options would only apply to a new one.
    const open = (name: string): Promise<KV> => KvBucket.open(js, name, { description: "opened by the tests", replicas: 1 })
    const [leaseKv, memberKv] = yield* Effect.promise(() => Promise.all([open(Leases.LEASES_BUCKET), open(Leases.MEMBERS_BUCKET)]))
    const follow = <A>(kv: KV) =>
      Effect.gen(function* () {
        const changes: Array<Change<A>> = []
        const current = new Map<string, A>()
        yield* Effect.acquireRelease(
          Effect.promise(async () => {
            const entries = await kv.watch()
            void (async () => {
              for await (const entry of entries) {
                const value = parse<A>(entry)
                changes.push({ at: entry.created.getTime(), key: entry.key, revision: entry.revision, value })
                if (value === undefined) current.delete(entry.key)
                else current.set(entry.key, value)
              }
            })()
            return entries
          }),
          (entries) => Effect.sync(() => entries.stop())
        )
        return { changes, current }
      })
    const leases = yield* follow<Lease>(leaseKv)
    const members = yield* follow<Member>(memberKv)
    return {
      leaseChanges: () => leases.changes,
      memberChanges: () => members.changes,
      holders: (now = Date.now()) =>
        new Map(Array.from(leases.current).filter(([, lease]) => (members.current.get(lease.owner)?.expiresAt ?? 0) > now)),
      members: () => members.current,
      stored: (destination) =>
        Effect.promise(() => leaseKv.get(destination)).pipe(Effect.map((entry) => (entry === null ? undefined : parse<Lease>(entry))))
    }
  })

/** One process's uninterrupted hold on one destination, by the buckets. */
export interface Tenure {
  readonly destination: string
  /** Instance id (a restart is a new one). */
  readonly owner: string
  readonly name: string
  /** When it wrote the lease. */
  readonly from: number
  /** When it deleted the lease, or else when its membership ran out or ended; Infinity while it holds the lease. */
  readonly until: number
}

/**
 * Who held each destination when, from the buckets' changes. A lease replaced by another
 * process's ends when its holder's membership ended: its last announced expiry, or its
 * leaving, whichever came first.
 */
export const tenures = (watch: LeaseWatch, now = Date.now()): ReadonlyArray<Tenure> => {
  /** Per instance: when its membership ends, as far as the bucket tells by `at`. */
  const membershipEnd = (owner: string, at: number): number => {
    let end = 0
    for (const change of watch.memberChanges()) {
      if (change.key !== owner || change.at > at) continue
      end = change.value === undefined ? Math.min(end, change.at) : change.value.expiresAt
    }
    return end
  }
  const result: Array<Tenure> = []
  const open = new Map<string, { owner: string; name: string; from: number }>()
  for (const change of watch.leaseChanges()) {
    const held = open.get(change.key)
    if (held !== undefined && change.value?.owner === held.owner) continue
    if (held !== undefined) {
      result.push({ destination: change.key, ...held, until: change.value === undefined ? change.at : membershipEnd(held.owner, change.at) })
      open.delete(change.key)
    }
    if (change.value !== undefined) open.set(change.key, { owner: change.value.owner, name: change.value.name, from: change.at })
  }
  for (const [destination, held] of open) {
    const end = membershipEnd(held.owner, now)
    result.push({ destination, ...held, until: end > now ? Infinity : end })
  }
  return result
}

/**
 * Tenures of one destination that overlap: a lease taken while another process's was still in
 * force (not given back, its holder's membership not run out). Compare-and-set writes and the
 * membership check before a takeover should make this impossible.
 */
export const overlappingTenures = (all: ReadonlyArray<Tenure>): ReadonlyArray<string> => {
  const problems: Array<string> = []
  for (const [destination, list] of groupBy(all, (t) => t.destination)) {
    const sorted = [...list].sort((a, b) => a.from - b.from)
    for (let i = 1; i < sorted.length; i++) {
      const before = sorted[i - 1]!
      const after = sorted[i]!
      if (after.from < before.until) {
        problems.push(`${destination}: ${after.name} took the lease at ${iso(after.from)} while ${before.name}'s ran until ${iso(before.until)}`)
      }
    }
  }
  return problems
}

// ---------------------------------------------------------------------------------------------
// The receiver

/** One request as the exclusivity receiver saw it. */
export interface Delivery {
  /** 1 for the first request. */
  readonly n: number
  /** The destination, from the path `/d/<destination id>`. */
  readonly destination: string
  readonly eventId: string
  readonly key: string | undefined
  readonly version: number | undefined
  /** `sluice-attempt` */
  readonly attempt: number
  /** `webhook-timestamp`: the second the broker started the request in (its rate slot). */
  readonly signedAt: number
  /** Date.now() when the request's headers arrived. */
  readonly start: number
  /** When it was answered, or its connection closed unanswered; undefined while in flight. */
  readonly end: number | undefined
  /** Closed by the sender before the answer (a killed process). */
  readonly cut: boolean
  /** The broker process that sent it; undefined until found, or when it could not be. */
  readonly sender: Sender | undefined
}

export interface ExclusivityReceiver {
  readonly url: string
  readonly deliveries: () => ReadonlyArray<Delivery>
  /** Requests not answered yet. */
  readonly inFlight: () => ReadonlyArray<Delivery>
  /** Waits until every request received so far has its sender looked up. */
  readonly identified: Effect.Effect<void>
}

type MutableDelivery = { -readonly [K in keyof Delivery]: Delivery[K] }

/**
 * An HTTP destination for several destinations (`/d/<id>`) that answers 200 after
 * `delayMs(destination)` and records each request's time in flight and sender.
 */
export const startExclusivityReceiver = (options: {
  readonly identify: (clientPort: number, serverPort: number) => Promise<Sender | undefined>
  readonly delayMs: (destination: string) => number
}): Effect.Effect<ExclusivityReceiver, never, Scope.Scope> =>
  Effect.gen(function* () {
    const deliveries: Array<MutableDelivery> = []
    const senders = new WeakMap<Socket, Promise<Sender | undefined>>()
    const lookups = new Set<Promise<unknown>>()
    const timers = new Set<NodeJS.Timeout>()
    let port = 0
    const server = createServer((req: IncomingMessage, res) => {
      const start = Date.now()
      const chunks: Array<Buffer> = []
      req.on("data", (chunk: Buffer) => chunks.push(chunk))
      req.on("end", () => {
        const path = (req.url ?? "/").split("?")[0]!
        let body: { id?: string; key?: string; version?: number } = {}
        try {
          body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as typeof body
        } catch {
          // Recorded with what the headers say; the checks then report it.
        }
        const delivery: MutableDelivery = {
          n: deliveries.length + 1,
          destination: path.startsWith("/d/") ? path.slice(3) : path,
          eventId: body.id ?? String(req.headers["webhook-id"]),
          key: body.key,
          version: body.version,
          attempt: Number(req.headers["sluice-attempt"]),
          signedAt: Number(req.headers["webhook-timestamp"]),
          start,
          end: undefined,
          cut: false,
          sender: undefined
        }
        deliveries.push(delivery)
        const lookup = (senders.get(req.socket) ?? Promise.resolve(undefined)).then((sender) => {
          delivery.sender = sender
        })
        lookups.add(lookup)
        void lookup.finally(() => lookups.delete(lookup))
        res.once("close", () => {
          if (delivery.end === undefined) {
            delivery.end = Date.now()
            delivery.cut = true
          }
        })
        const timer = setTimeout(() => {
          timers.delete(timer)
          if (delivery.end !== undefined) return
          // In flight until the answer leaves: the sender cannot have it earlier.
          delivery.end = Date.now()
          res.writeHead(200).end()
        }, options.delayMs(delivery.destination))
        timers.add(timer)
      })
    })
    server.keepAliveTimeout = 60_000
    server.on("connection", (socket: Socket) => {
      const lookup = options.identify(socket.remotePort ?? 0, port).catch(() => undefined)
      senders.set(socket, lookup)
    })
    yield* Effect.acquireRelease(
      Effect.async<void>((resume) => {
        server.listen(0, "127.0.0.1", () => {
          port = (server.address() as AddressInfo).port
          resume(Effect.void)
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          for (const timer of timers) clearTimeout(timer)
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
    )
    return {
      url: `http://127.0.0.1:${port}`,
      deliveries: () => deliveries,
      inFlight: () => deliveries.filter((d) => d.end === undefined),
      identified: Effect.promise(() => Promise.all(Array.from(lookups))).pipe(Effect.asVoid)
    }
  })

// ---------------------------------------------------------------------------------------------
// Checks over what the receiver recorded

const groupBy = <A>(items: ReadonlyArray<A>, key: (a: A) => string): Map<string, Array<A>> => {
  const groups = new Map<string, Array<A>>()
  for (const item of items) {
    const k = key(item)
    const group = groups.get(k)
    if (group === undefined) groups.set(k, [item])
    else group.push(item)
  }
  return groups
}

const iso = (ms: number) => (Number.isFinite(ms) ? new Date(ms).toISOString().slice(11, 23) : "—")

/** `<destination> <key> v<version> #<n> (<sender>)`, for messages. */
export const describeDelivery = (d: Delivery): string =>
  `${d.destination} ${d.key ?? "-"} v${d.version ?? "?"} #${d.n} attempt ${d.attempt} by ${d.sender?.name ?? "?"}${d.sender ? `/${d.sender.pid}` : ""} at ${iso(d.start)}–${iso(d.end ?? Infinity)}`

const endOf = (d: Delivery) => d.end ?? Infinity

/** Requests of one destination and key in flight at the same time: two deliveries of an ordered key overlapped. */
export const keyOverlaps = (deliveries: ReadonlyArray<Delivery>): ReadonlyArray<string> => {
  const problems: Array<string> = []
  for (const list of groupBy(deliveries.filter((d) => d.key !== undefined), (d) => `${d.destination}\u0000${d.key}`).values()) {
    /** Of the requests started so far, the one in flight longest. */
    let latest: Delivery | undefined
    for (const d of [...list].sort((a, b) => a.start - b.start || a.n - b.n)) {
      if (latest !== undefined && endOf(latest) > d.start) problems.push(`${describeDelivery(d)} started while ${describeDelivery(latest)} was in flight`)
      if (latest === undefined || endOf(d) > endOf(latest)) latest = d
    }
  }
  return problems
}

/** Requests of one destination from two processes in flight at the same time: its actor ran in both. */
export const senderOverlaps = (deliveries: ReadonlyArray<Delivery>): ReadonlyArray<string> => {
  const problems: Array<string> = []
  for (const list of groupBy(deliveries.filter((d) => d.sender !== undefined), (d) => d.destination).values()) {
    /** Per sender pid, of its requests started so far, the one in flight longest. */
    const latest = new Map<number, Delivery>()
    for (const d of [...list].sort((a, b) => a.start - b.start || a.n - b.n)) {
      for (const [pid, other] of latest) {
        if (pid !== d.sender!.pid && endOf(other) > d.start) problems.push(`${describeDelivery(d)} started while ${describeDelivery(other)} was in flight`)
      }
      const mine = latest.get(d.sender!.pid)
      if (mine === undefined || endOf(d) > endOf(mine)) latest.set(d.sender!.pid, d)
    }
  }
  return problems
}

/** Per destination and key, first deliveries whose version is not above the one delivered before them. */
export const orderBreaks = (deliveries: ReadonlyArray<Delivery>): ReadonlyArray<string> => {
  const problems: Array<string> = []
  const seen = new Set<string>()
  const latest = new Map<string, Delivery>()
  for (const d of [...deliveries].sort((a, b) => a.start - b.start || a.n - b.n)) {
    const id = `${d.destination}\u0000${d.eventId}`
    if (seen.has(id)) continue
    seen.add(id)
    if (d.key === undefined) continue
    const lane = `${d.destination}\u0000${d.key}`
    const before = latest.get(lane)
    if (before !== undefined && (before.version ?? 0) >= (d.version ?? 0)) {
      problems.push(`${describeDelivery(d)} first delivered after ${describeDelivery(before)}`)
    }
    if (before === undefined || (before.version ?? 0) < (d.version ?? 0)) latest.set(lane, d)
  }
  return problems
}

/** Every copy after the first of an event at a destination. */
export const repeats = (deliveries: ReadonlyArray<Delivery>): ReadonlyArray<{ readonly first: Delivery; readonly again: Delivery }> =>
  Array.from(groupBy(deliveries, (d) => `${d.destination}\u0000${d.eventId}`).values()).flatMap((copies) => {
    const sorted = [...copies].sort((a, b) => a.start - b.start || a.n - b.n)
    return sorted.slice(1).map((again) => ({ first: sorted[0]!, again }))
  })

/**
 * Requests sent by a process that did not hold the destination's lease when the request
 * arrived (arrival is after the broker started it, and before the lease was given back, since
 * a process stops its actor before it gives the lease back).
 */
export const outsideTenure = (deliveries: ReadonlyArray<Delivery>, held: ReadonlyArray<Tenure>): ReadonlyArray<string> => {
  const byDestination = groupBy(held, (t) => t.destination)
  return deliveries
    .filter((d) => d.sender !== undefined)
    .filter((d) => !(byDestination.get(d.destination) ?? []).some((t) => t.name === d.sender!.name && t.from <= d.start && d.start <= t.until))
    .map((d) => {
      const around = (byDestination.get(d.destination) ?? []).map((t) => `${t.name} ${iso(t.from)}–${iso(t.until)}`).join(", ")
      return `${describeDelivery(d)} outside its sender's lease (leases: ${around})`
    })
}

/**
 * The most starts in any half-open window of `windowMs` that holds starts of more than one
 * sender: where a takeover or handover could let a new owner's burst land on the old one's.
 */
export const maxInMixedWindow = (starts: ReadonlyArray<{ readonly at: number; readonly sender: number | undefined }>, windowMs: number): number => {
  const sorted = [...starts].sort((a, b) => a.at - b.at)
  let max = 0
  for (let i = 0; i < sorted.length; i++) {
    const senders = new Set<number | undefined>()
    let j = i
    while (j < sorted.length && sorted[j]!.at - sorted[i]!.at < windowMs) senders.add(sorted[j++]!.sender)
    if (senders.size > 1) max = Math.max(max, j - i)
  }
  return max
}

/** The most requests the broker signed in one second (`webhook-timestamp`), with that second. */
export const busiestSignedSecond = (deliveries: ReadonlyArray<Delivery>): { readonly second: number; readonly count: number } => {
  let best = { second: 0, count: 0 }
  for (const [second, list] of groupBy(deliveries, (d) => String(d.signedAt))) {
    if (list.length > best.count) best = { second: Number(second), count: list.length }
  }
  return best
}
