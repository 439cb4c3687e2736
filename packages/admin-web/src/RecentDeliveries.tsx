/**
 * A destination's most recent deliveries, each with its state there and a replay button;
 * the link at the bottom opens the explorer filtered to this destination.
 */
import { useCallback } from "react"
import type { AdminClient } from "./api.js"
import { EventTable } from "./EventsPage.js"
import { RemoteView } from "./Notice.js"
import { ReplayEventButton } from "./ReplayEventButton.js"
import { Link } from "./Router.js"
import { paths } from "./routes.js"
import { useApi } from "./useApi.js"

const RECENT = 20

export const RecentDeliveries = ({ destinationId }: { readonly destinationId: string }) => {
  const request = useCallback(
    (client: AdminClient) => client.events.list({ urlParams: { destination: destinationId, limit: RECENT } }),
    [destinationId]
  )
  const [page, reload] = useApi(request, { refreshMs: 3_000 })
  return (
    <section className="card" aria-labelledby="recent-title">
      <div className="card-head">
        <h2 id="recent-title">Recent deliveries</h2>
        <Link to={paths.events(new URLSearchParams({ destination: destinationId }))}>All events for this destination</Link>
      </div>
      <RemoteView remote={page} onRetry={reload}>
        {(value) => (
          <EventTable
            page={value}
            filtered={false}
            destinationId={destinationId}
            actions={(event) => (
              <ReplayEventButton compact eventId={event.id} destinationId={destinationId} onReplayed={reload} />
            )}
          />
        )}
      </RemoteView>
    </section>
  )
}
