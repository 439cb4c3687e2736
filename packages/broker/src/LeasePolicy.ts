/**
 * Which destinations this broker process should run, decided from what every process sees
 * in the lease and member buckets. Pure, so tests can walk through joins, deaths and races.
 *
 * Each live process aims at a fair share of the destinations it knows (rounded up), and
 * announces how many more it wants. It takes free leases up to its share — all of them when
 * no other process wants more — preferring those it hashes highest (rendezvous hashing), so
 * processes racing for free leases mostly reach for different ones and a compare-and-set
 * settles the rest. A process over its share gives leases back only as far as others want
 * more, so processes that know different sets of destinations never hand a lease back and
 * forth. A lease left free for longer than the grace period is taken by anyone, share or
 * not: no destination stays without an actor.
 */

/**
 * One destination's lease as stored: it lasts as long as its holder's membership, so a
 * process renews one entry (its own) however many destinations it runs.
 */
export interface Lease {
  /** Instance id of the holding process (unique per start). */
  readonly owner: string
  /** Its process name, what operators see. */
  readonly name: string
}

/** One broker process as it announces itself, renewed every round. */
export interface Member {
  readonly name: string
  /** By the member's clock; after it the member counts as gone, and its leases with it. */
  readonly expiresAt: number
  /** How many more leases it would take to reach its share. */
  readonly wants: number
}

export interface View {
  readonly self: string
  readonly now: number
  /** Announced members by instance id, live or not; self among them as it last announced. */
  readonly members: ReadonlyMap<string, Member>
  /** Destinations this process knows. */
  readonly destinations: ReadonlyArray<string>
  /** The current lease per destination; absent = free (never taken, or released). */
  readonly leases: ReadonlyMap<string, Lease>
  /** Since when this process has seen each free destination free. */
  readonly freeSince: ReadonlyMap<string, number>
  /** How long a free destination waits for a process with room before anyone takes it. */
  readonly graceMs: number
}

export interface Plan {
  /** Free (or expired) leases to take. */
  readonly acquire: ReadonlyArray<string>
  /** Held leases to keep. */
  readonly keep: ReadonlyArray<string>
  /** Held leases to give back (actor stopped first). */
  readonly release: ReadonlyArray<string>
  /** What to announce: leases still wanted after this plan. */
  readonly wants: number
}

/** Whether `lease` is in force at `now`: its holder is a live member. */
export const inForce = (lease: Lease | undefined, members: ReadonlyMap<string, Member>, now: number): lease is Lease =>
  lease !== undefined && (members.get(lease.owner)?.expiresAt ?? 0) > now

/** Rendezvous weight of a process for a destination: 32-bit FNV-1a with a final avalanche. */
export const weight = (member: string, destinationId: string): number => {
  let h = 0x811c9dc5
  const text = `${member}\u0000${destinationId}`
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

const byWeight = (self: string, ids: ReadonlyArray<string>, order: "highest" | "lowest"): Array<string> =>
  ids
    .map((id) => ({ id, w: weight(self, id) }))
    .sort((a, b) => (order === "highest" ? b.w - a.w : a.w - b.w) || (a.id < b.id ? -1 : 1))
    .map(({ id }) => id)

/** What this process does with the leases this round. */
export const plan = (view: View): Plan => {
  const { self, now } = view
  const mine: Array<string> = []
  const free: Array<string> = []
  for (const id of view.destinations) {
    const lease = view.leases.get(id)
    if (!inForce(lease, view.members, now)) free.push(id)
    else if (lease.owner === self) mine.push(id)
  }
  const others = Array.from(view.members).filter(([id, m]) => id !== self && m.expiresAt > now)
  const share = Math.ceil(view.destinations.length / (others.length + 1))

  const othersWant = others.reduce((sum, [, m]) => sum + Math.max(0, m.wants), 0)
  // Nobody else asks for more: nothing is gained by leaving a lease free.
  const room = othersWant === 0 ? free.length : Math.max(0, share - mine.length)
  const preferred = byWeight(self, free, "highest")
  const acquire = new Set(preferred.slice(0, room))
  for (const id of free) {
    if ((view.freeSince.get(id) ?? now) <= now - view.graceMs) acquire.add(id)
  }

  const excess = Math.min(Math.max(0, mine.length - share), othersWant)
  const release = byWeight(self, mine, "lowest").slice(0, excess)
  const releasing = new Set(release)

  return {
    acquire: Array.from(acquire),
    keep: mine.filter((id) => !releasing.has(id)),
    release,
    wants: Math.max(0, share - mine.length - acquire.size)
  }
}
