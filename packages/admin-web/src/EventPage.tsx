/**
 * One event: its envelope and payload, and for every destination where its delivery stands,
 * what it refers to (the event that canceled it, the one it duplicates, the one that made it
 * obsolete) and every attempt — enough to tell "never received" from "received, but the
 * answer was lost". Refreshes while the page is open, so a replay's attempts appear.
 */
import type { History } from "@sluice/protocol"
import { useCallback } from "react"
import type { AdminClient } from "./api.js"
import { formatDuration, formatTime, prettyJson } from "./format.js"
import { DeliveryBadge } from "./HealthBadge.js"
import { Empty, RemoteView } from "./Notice.js"
import { splitEventMentions } from "./references.js"
import { ReplayEventButton } from "./ReplayEventButton.js"
import { Link } from "./Router.js"
import { paths } from "./routes.js"
import { useApi } from "./useApi.js"

const REFRESH_MS = 2_000

export const EventPage = ({ id }: { readonly id: string }) => {
  const request = useCallback((client: AdminClient) => client.events.get({ path: { id } }), [id])
  const [detail, reload] = useApi(request, { refreshMs: REFRESH_MS })
  return (
    <>
      <p className="breadcrumbs">
        <Link to={paths.events()}>Events</Link> /
      </p>
      <h1 className="mono">{id}</h1>
      <RemoteView remote={detail} onRetry={reload}>
        {(value) => <EventDetailView detail={value} onReplayed={reload} />}
      </RemoteView>
    </>
  )
}

const EventDetailView = ({ detail, onReplayed }: { readonly detail: History.EventDetail; readonly onReplayed: () => void }) => {
  const { event, deliveries } = detail
  return (
    <>
      <section className="card" aria-labelledby="event-envelope">
        <h2 id="event-envelope">Envelope</h2>
        <dl className="facts">
          <dt>Type</dt>
          <dd>
            <Link to={paths.events(new URLSearchParams({ type: event.type }))}>{event.type}</Link>
          </dd>
          <dt>Key</dt>
          <dd>
            {event.key === null ? "—" : <Link to={paths.events(new URLSearchParams({ key: event.key }))}>{event.key}</Link>}
          </dd>
          <dt>Version</dt>
          <dd>{event.version ?? "—"}</dd>
          <dt>Idempotency key</dt>
          <dd>{event.idempotencyKey ?? "—"}</dd>
          <dt>Occurred</dt>
          <dd>{formatTime(event.occurredAt)}</dd>
          <dt>Received</dt>
          <dd>{formatTime(event.receivedAt)}</dd>
          <dt>Stream sequence</dt>
          <dd>{event.streamSeq}</dd>
          {event.duplicateOf !== null && (
            <>
              <dt>Duplicate of</dt>
              <dd>
                <Link to={paths.event(event.duplicateOf)}>{event.duplicateOf}</Link> (same idempotency key)
              </dd>
            </>
          )}
        </dl>
        {event.headers !== null && Object.keys(event.headers).length > 0 && (
          <>
            <h3>Headers</h3>
            <pre className="json">{prettyJson(event.headers)}</pre>
          </>
        )}
        <h3>Payload</h3>
        <pre className="json" tabIndex={0} aria-label="Payload">
          {prettyJson(event.data)}
        </pre>
      </section>

      <h2>Deliveries</h2>
      {deliveries.length === 0 ? (
        <Empty>No destination subscribes to {event.type}: this event was stored and delivered nowhere.</Empty>
      ) : (
        deliveries.map((delivery) => (
          <DeliveryView key={delivery.destinationId} eventId={event.id} delivery={delivery} onReplayed={onReplayed} />
        ))
      )}
    </>
  )
}

const Mentions = ({ text }: { readonly text: string }) => (
  <>
    {splitEventMentions(text).map((part, i) =>
      "eventId" in part ? (
        <Link key={i} to={paths.event(part.eventId)}>
          {part.eventId}
        </Link>
      ) : (
        <span key={i}>{part.text}</span>
      )
    )}
  </>
)

const DeliveryView = ({
  eventId,
  delivery,
  onReplayed
}: {
  readonly eventId: string
  readonly delivery: History.DeliveryDetail
  readonly onReplayed: () => void
}) => (
  <section className="card delivery" data-destination={delivery.destinationId} aria-label={`Delivery to ${delivery.destinationId}`}>
    <div className="card-head">
      <h3>
        <Link to={paths.destination(delivery.destinationId)}>{delivery.destinationId}</Link>{" "}
        <DeliveryBadge state={delivery.state} />
      </h3>
      <ReplayEventButton eventId={eventId} destinationId={delivery.destinationId} onReplayed={onReplayed} />
    </div>
    <dl className="facts">
      <dt>Attempts</dt>
      <dd>{Math.max(delivery.attempts, delivery.attemptLog.length)}</dd>
      <dt>Last changed</dt>
      <dd>{formatTime(delivery.updatedAt)}</dd>
      {delivery.nextAttemptAt !== null && (
        <>
          <dt>Next attempt</dt>
          <dd>{formatTime(delivery.nextAttemptAt)}</dd>
        </>
      )}
      {delivery.lastError !== null && (
        <>
          <dt>Last error</dt>
          <dd>{delivery.lastError}</dd>
        </>
      )}
      {delivery.canceledBy !== null && (
        <>
          <dt>Canceled by</dt>
          <dd>
            <Link to={paths.event(delivery.canceledBy)}>{delivery.canceledBy}</Link> (a newer event for the same key)
          </dd>
        </>
      )}
      {delivery.duplicateOf !== null && (
        <>
          <dt>Duplicate of</dt>
          <dd>
            <Link to={paths.event(delivery.duplicateOf)}>{delivery.duplicateOf}</Link>
          </dd>
        </>
      )}
      {delivery.ignoredReason !== null && (
        <>
          <dt>Ignored because</dt>
          <dd>
            <Mentions text={delivery.ignoredReason} />
          </dd>
        </>
      )}
    </dl>
    {delivery.attemptLog.length === 0 ? (
      <Empty>No attempt was made{delivery.state === "queued" ? " yet" : ""}.</Empty>
    ) : (
      <div className="table-scroll">
        <table className="table attempts">
          <caption className="visually-hidden">Attempts to deliver to {delivery.destinationId}</caption>
          <thead>
            <tr>
              <th scope="col" className="num">
                #
              </th>
              <th scope="col">Started</th>
              <th scope="col" className="num">
                Duration
              </th>
              <th scope="col">Outcome</th>
              <th scope="col">Status</th>
              <th scope="col">Response / error</th>
            </tr>
          </thead>
          <tbody>
            {delivery.attemptLog.map((attempt, i) => (
              // Numbered by position: a replay starts the broker's own attempt count again.
              <tr key={`${i}-${attempt.startedAt}`} data-attempt={i + 1}>
                <td data-label="Attempt" className="num">
                  {i + 1}
                </td>
                <td data-label="Started">{formatTime(attempt.startedAt)}</td>
                <td data-label="Duration" className="num">{formatDuration(attempt.durationMs)}</td>
                <td data-label="Outcome">
                  <span className={`outcome outcome-${attempt.outcome}`}>{attempt.outcome}</span>
                </td>
                <td data-label="Status">{attempt.statusCode ?? "—"}</td>
                <td data-label="Response / error" className="excerpt">
                  {attempt.error !== null && <div className="bad">{attempt.error}</div>}
                  {attempt.responseExcerpt !== null && attempt.responseExcerpt !== "" && (
                    <code className="response">{attempt.responseExcerpt}</code>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    )}
  </section>
)
