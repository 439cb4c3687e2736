/**
 * The receivers process: HTTP servers standing in for destinations (see ReceiverProtocol).
 * It keeps only what the benchmarks report — arrival times, latencies, per-key order — not
 * the requests themselves, so half a million deliveries cost it little memory and time.
 * Unlike test/helpers/receiver.ts, which keeps every request for assertions.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import * as Ipc from "./Ipc.js"
import type { Probe, ReceiverProtocol, ServerMode, Summary } from "./ReceiverProtocol.js"
import { quantileOfSorted } from "./Stats.js"

/** Wall-clock ms with sub-ms precision, comparable across processes on the machine. */
const now = () => performance.timeOrigin + performance.now()

const servers: Array<Server> = []
const modes: Array<ServerMode> = []
const ok: ServerMode = { status: 200, delayMs: 0 }

const fresh = () => ({
  delivered: 0,
  refused: 0,
  duplicates: 0,
  orderViolations: 0,
  bodyBytes: 0,
  seen: new Set<string>(),
  lastSeq: new Map<string, { readonly seq: number; readonly at: number }>(),
  /** Of the out-of-order arrivals: how far behind the newest of their key they were. */
  worstOrder: { seqBehind: 0, msLate: 0 },
  latencies: new Float64Array(1 << 16),
  latencyCount: 0,
  arrivals: [] as Array<Array<number>>
})
let state = fresh()

const recordLatency = (ms: number) => {
  if (state.latencyCount === state.latencies.length) {
    const grown = new Float64Array(state.latencies.length * 2)
    grown.set(state.latencies)
    state.latencies = grown
  }
  state.latencies[state.latencyCount++] = ms
}

const parse = (body: string): { id?: string; data?: Partial<Probe> } => {
  try {
    return JSON.parse(body) as { id?: string; data?: Partial<Probe> }
  } catch {
    return {}
  }
}

/** Notes one 2xx-answered event. */
const record = (server: number, at: number, body: string) => {
  const event = parse(body)
  state.delivered += 1
  state.bodyBytes += Buffer.byteLength(body)
  const id = event.id ?? `unidentified-${state.delivered}`
  if (state.seen.has(id)) {
    state.duplicates += 1
    return
  }
  state.seen.add(id)
  ;(state.arrivals[server] ??= []).push(at)
  const probe = event.data
  if (typeof probe?.t === "number") recordLatency(at - probe.t)
  if (typeof probe?.k === "string" && typeof probe.s === "number") {
    const last = state.lastSeq.get(probe.k)
    if (last !== undefined && probe.s <= last.seq) {
      state.orderViolations += 1
      state.worstOrder.seqBehind = Math.max(state.worstOrder.seqBehind, last.seq - probe.s)
      state.worstOrder.msLate = Math.max(state.worstOrder.msLate, at - last.at)
    } else state.lastSeq.set(probe.k, { seq: probe.s, at })
  }
}

const handler = (server: number) => (req: IncomingMessage, res: ServerResponse) => {
  const at = now()
  const chunks: Array<Buffer> = []
  req.on("data", (chunk: Buffer) => chunks.push(chunk))
  req.on("end", () => {
    const mode = modes[server] ?? ok
    const answer = () => {
      if (mode.status >= 200 && mode.status < 300) record(server, at, Buffer.concat(chunks).toString("utf8"))
      else state.refused += 1
      res.writeHead(mode.status, { "content-length": "0" })
      res.end()
    }
    if (mode.delayMs > 0) setTimeout(answer, mode.delayMs)
    else answer()
  })
}

const listenOne = (index: number): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer(handler(index))
    // Longer than the senders' idle timeouts, so the sender always closes first and never
    // reuses a connection the server is closing.
    server.keepAliveTimeout = 30_000
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      servers[index] = server
      resolve((server.address() as AddressInfo).port)
    })
  })

const summary = (): Summary => {
  const sorted = state.latencies.slice(0, state.latencyCount).sort()
  let firstAt = Number.POSITIVE_INFINITY
  let lastAt = Number.NEGATIVE_INFINITY
  const perServer = servers.map((_, i) => {
    const times = state.arrivals[i] ?? []
    for (const t of times) {
      if (t < firstAt) firstAt = t
      if (t > lastAt) lastAt = t
    }
    return times.length
  })
  return {
    delivered: state.delivered,
    unique: state.seen.size,
    refused: state.refused,
    duplicates: state.duplicates,
    orderViolations: state.orderViolations,
    worstOrderViolation: state.orderViolations === 0 ? null : { ...state.worstOrder },
    perServer,
    firstAt: Number.isFinite(firstAt) ? firstAt : null,
    lastAt: Number.isFinite(lastAt) ? lastAt : null,
    meanBodyBytes: state.delivered === 0 ? 0 : state.bodyBytes / state.delivered,
    latency:
      sorted.length === 0
        ? null
        : {
            count: sorted.length,
            p50: quantileOfSorted(sorted, 0.5),
            p90: quantileOfSorted(sorted, 0.9),
            p99: quantileOfSorted(sorted, 0.99),
            max: sorted[sorted.length - 1]!
          }
  }
}

Ipc.serve<ReceiverProtocol>({
  listen: async ({ count }) => {
    for (let i = servers.length; i < count; i++) await listenOne(i)
    return servers.map((server) => (server.address() as AddressInfo).port)
  },
  configure: ({ servers: which, mode }) => {
    for (const i of which ?? servers.keys()) modes[i] = mode
  },
  reset: () => {
    state = fresh()
  },
  summary,
  arrivals: ({ server }) => state.arrivals[server] ?? []
})
