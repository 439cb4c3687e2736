/**
 * Where the broker's CPU time goes, from the V8 profile `--cpu-prof` writes: self time by
 * function and by file or package, and time including callees for the broker's own
 * functions. Enough to see which module to look at without opening a profiler.
 */
import { readFileSync } from "node:fs"
import { readFile } from "node:fs/promises"
import { fileURLToPath } from "node:url"
import { Console, Effect } from "effect"
import * as Report from "./Report.js"

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly hitCount?: number
  readonly children?: ReadonlyArray<number>
}

interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly startTime: number
  readonly endTime: number
}

/** A short, stable name for where code lives: a repo path, a package, or V8's pseudo-frames. */
export const locationOf = (url: string): string => {
  if (url === "") return "(native / V8)"
  const pkg = /node_modules\/\.pnpm\/[^/]+\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg !== null) return pkg[1]!
  const repo = /\/((?:packages|apps|test|bench)\/.*)$/.exec(url)
  if (repo !== null) return repo[1]!
  return url.replace(/^file:\/\//, "").replace(/^node:/, "node:")
}

/** For a file of an installed package, its path inside the package (`/dist/esm/internal/core.js`). */
const fileInPackage = (url: string): string =>
  /node_modules\/\.pnpm\/[^/]+\/node_modules\/(?:@[^/]+\/)?[^/]+(\/.*)$/.exec(url)?.[1] ?? ""

export interface ProfileSummary {
  readonly totalMs: number
  readonly byFunction: ReadonlyArray<{ readonly name: string; readonly ms: number }>
  readonly byLocation: ReadonlyArray<{ readonly name: string; readonly ms: number }>
  /** The broker's own functions (packages/*), time including everything they call. */
  readonly ownInclusive: ReadonlyArray<{ readonly name: string; readonly ms: number }>
  /**
   * Self time charged to the innermost repository module on the stack: drizzle called from
   * PgHistoryStore counts for PgHistoryStore. What no module of ours is on the stack for
   * (the Effect scheduler resuming a fiber, socket callbacks, GC) is "(no repository frame)".
   */
  readonly byOwnModule: ReadonlyArray<{ readonly name: string; readonly ms: number }>
}

/** The trimmed text of a source line (0-based), for naming anonymous functions; undefined when unreadable. */
export type SourceLine = (url: string, line: number) => string | undefined

export const summarize = (profile: CpuProfile, sourceLine: SourceLine = () => undefined, top = 15): ProfileSummary => {
  const totalHits = profile.nodes.reduce((sum, node) => sum + (node.hitCount ?? 0), 0)
  const totalMs = (profile.endTime - profile.startTime) / 1000
  const msPerHit = totalHits === 0 ? 0 : totalMs / totalHits
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const label = (node: ProfileNode) => {
    const { functionName, url, lineNumber } = node.callFrame
    const name = functionName || (sourceLine(url, lineNumber)?.slice(0, 50) ?? "(anonymous)")
    return `${name} — ${locationOf(url)}${fileInPackage(url)}:${lineNumber + 1}`
  }

  const byFunction = new Map<string, number>()
  const byLocation = new Map<string, number>()
  for (const node of profile.nodes) {
    const ms = (node.hitCount ?? 0) * msPerHit
    const where = node.callFrame.url === "" ? node.callFrame.functionName || "(native / V8)" : locationOf(node.callFrame.url)
    byFunction.set(label(node), (byFunction.get(label(node)) ?? 0) + ms)
    byLocation.set(where, (byLocation.get(where) ?? 0) + ms)
  }

  // Inclusive time per own function, counting a function once per call path even when recursive.
  const inclusive = new Map<number, number>()
  const total = (id: number): number => {
    const known = inclusive.get(id)
    if (known !== undefined) return known
    const node = byId.get(id)!
    const ms = (node.hitCount ?? 0) * msPerHit + (node.children ?? []).reduce((sum, child) => sum + total(child), 0)
    inclusive.set(id, ms)
    return ms
  }
  const own = new Map<string, number>()
  const byOwnModule = new Map<string, number>()
  const visit = (id: number, active: ReadonlySet<string>, module: string) => {
    const node = byId.get(id)!
    const isOwn = /\/packages\/[^/]+\/src\//.test(node.callFrame.url)
    const name = label(node)
    const innermost = isOwn ? locationOf(node.callFrame.url) : module
    byOwnModule.set(innermost, (byOwnModule.get(innermost) ?? 0) + (node.hitCount ?? 0) * msPerHit)
    let next = active
    if (isOwn && !active.has(name)) {
      own.set(name, (own.get(name) ?? 0) + total(id))
      next = new Set(active).add(name)
    }
    for (const child of node.children ?? []) visit(child, next, innermost)
  }
  if (profile.nodes[0] !== undefined) visit(profile.nodes[0].id, new Set(), "(no repository frame)")

  const sorted = (map: Map<string, number>) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, ms]) => ({ name, ms }))
  return {
    totalMs,
    byFunction: sorted(byFunction),
    byLocation: sorted(byLocation),
    ownInclusive: sorted(own),
    byOwnModule: sorted(byOwnModule)
  }
}

/** Lines of the repository's own TypeScript files, as they are on disk now. */
const repoSourceLine = (): SourceLine => {
  const files = new Map<string, ReadonlyArray<string> | undefined>()
  return (url, line) => {
    if (!url.startsWith("file://")) return undefined
    if (!files.has(url)) {
      try {
        files.set(url, readFileSync(fileURLToPath(url), "utf8").split("\n"))
      } catch {
        files.set(url, undefined)
      }
    }
    return files.get(url)?.[line]?.trim()
  }
}

/** Prints where the time of one profile went. */
export const print = (file: string) =>
  Effect.gen(function* () {
    const profile = JSON.parse(yield* Effect.promise(() => readFile(file, "utf8"))) as CpuProfile
    const summary = summarize(profile, repoSourceLine())
    const pct = (ms: number) => Report.fmt((ms / summary.totalMs) * 100, 1)
    yield* Console.log(`\nBroker CPU profile ${file} (${Report.fmt(summary.totalMs / 1000, 1)} s of wall time)`)
    yield* Report.printTable("Self time by file or package", ["where", "ms", "%"], summary.byLocation.map((r) => [r.name, Report.fmt(r.ms), pct(r.ms)]))
    yield* Report.printTable("Self time by function", ["function", "ms", "%"], summary.byFunction.map((r) => [r.name, Report.fmt(r.ms), pct(r.ms)]))
    yield* Report.printTable(
      "Self time by innermost repository module on the stack",
      ["module", "ms", "%"],
      summary.byOwnModule.map((r) => [r.name, Report.fmt(r.ms), pct(r.ms)])
    )
    yield* Report.printTable(
      "Broker functions, time including callees",
      ["function", "ms", "%"],
      summary.ownInclusive.map((r) => [r.name, Report.fmt(r.ms), pct(r.ms)])
    )
    return summary
  })
