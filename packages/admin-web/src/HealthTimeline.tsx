/**
 * A destination's health over the last hour, day or week: the chart of state bands, and
 * every transition with its reason as a list (newest first) for reading and copying.
 */
import type { Destination } from "@sluice/protocol"
import { useCallback, useState } from "react"
import type { AdminClient } from "./api.js"
import { HealthTimelineChart } from "./Charts.js"
import { formatTime } from "./format.js"
import { healthBands } from "./healthBands.js"
import { HealthBadge } from "./HealthBadge.js"
import { Empty, RemoteView } from "./Notice.js"
import { useApi, useNow } from "./useApi.js"

const WINDOWS = [
  { label: "1 hour", ms: 3600_000 },
  { label: "6 hours", ms: 6 * 3600_000 },
  { label: "24 hours", ms: 24 * 3600_000 },
  { label: "7 days", ms: 7 * 24 * 3600_000 }
] as const

export const HealthTimeline = ({ destination }: { readonly destination: Destination.DestinationView }) => {
  const id = destination.id
  const request = useCallback((client: AdminClient) => client.destinations.health({ path: { id } }), [id])
  const [transitions, reload] = useApi(request, { refreshMs: 5_000 })
  const [windowMs, setWindowMs] = useState<number>(WINDOWS[0].ms)
  const now = useNow(5_000)
  // Nothing to draw from before the destination existed.
  const from = Math.max(now - windowMs, Math.min(Date.parse(destination.createdAt), now - 60_000))
  return (
    <section className="card" aria-labelledby="timeline-title">
      <div className="card-head">
        <h2 id="timeline-title">Health timeline</h2>
        <div className="segmented" role="group" aria-label="Time window">
          {WINDOWS.map((w) => (
            <button
              key={w.ms}
              type="button"
              className="button small"
              aria-pressed={windowMs === w.ms}
              onClick={() => setWindowMs(w.ms)}
            >
              {w.label}
            </button>
          ))}
        </div>
      </div>
      <RemoteView remote={transitions} onRetry={reload}>
        {(list) => {
          const bands = healthBands(list, destination.health, from, now)
          const inWindow = [...list]
            .filter((t) => Date.parse(t.at) >= from)
            .sort((a, b) => Date.parse(b.at) - Date.parse(a.at))
          return (
            <>
              <HealthTimelineChart bands={bands} from={from} to={now} />
              {inWindow.length === 0 ? (
                <Empty>No health changes in this window: {destination.health.state} throughout.</Empty>
              ) : (
                <ol className="transitions" aria-label="Health changes, newest first">
                  {inWindow.map((t) => (
                    <li key={t.id}>
                      <time dateTime={t.at}>{formatTime(t.at)}</time> <HealthBadge state={t.from} /> →{" "}
                      <HealthBadge state={t.to} /> <span className="reason">{t.reason}</span>
                    </li>
                  ))}
                </ol>
              )}
            </>
          )
        }}
      </RemoteView>
    </section>
  )
}
