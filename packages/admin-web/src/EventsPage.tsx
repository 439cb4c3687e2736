/**
 * The event explorer: find events by id, type, key, destination, delivery state and time,
 * newest first, a page at a time. The search lives in the URL (see eventQuery.ts).
 */
import type { History } from "@sluice/protocol"
import { Envelope, States } from "@sluice/protocol"
import { Schema } from "effect"
import type { ReactNode } from "react"
import { useCallback, useId, useState } from "react"
import type { AdminClient } from "./api.js"
import type { EventQuery } from "./eventQuery.js"
import { isFiltered, queryFromParams, queryToParams, withoutCursor } from "./eventQuery.js"
import { formatTime, isoToLocalInput, localInputToIso } from "./format.js"
import { DeliveryBadge } from "./HealthBadge.js"
import { Empty, RemoteView } from "./Notice.js"
import { Link, navigate } from "./Router.js"
import { paths } from "./routes.js"
import { useApi } from "./useApi.js"

const PAGE_SIZE = 50

const isEventId = Schema.is(Envelope.EventId)

export const EventsPage = ({ search }: { readonly search: string }) => {
  const query = queryFromParams(new URLSearchParams(search))
  const request = useCallback(
    (client: AdminClient) =>
      client.events.list({ urlParams: { limit: PAGE_SIZE, ...queryFromParams(new URLSearchParams(search)) } }),
    [search]
  )
  const [page, reload] = useApi(request)
  const go = (next: EventQuery) => navigate(paths.events(queryToParams(next)))
  return (
    <>
      <h1>Events</h1>
      <SearchForm key={search} query={query} onSearch={(next) => go(withoutCursor(next))} />
      <RemoteView remote={page} onRetry={reload}>
        {(value) => (
          <>
            <EventTable page={value} filtered={isFiltered(query)} />
            <nav className="pager" aria-label="Pages">
              <button
                type="button"
                className="button"
                disabled={query.cursor === undefined}
                onClick={() => go(withoutCursor(query))}
              >
                Newest
              </button>
              <button type="button" className="button" onClick={reload}>
                Refresh
              </button>
              <button
                type="button"
                className="button"
                disabled={value.nextCursor === null}
                onClick={() => value.nextCursor !== null && go({ ...query, cursor: value.nextCursor })}
              >
                Older
              </button>
            </nav>
          </>
        )}
      </RemoteView>
    </>
  )
}

const deliveryStates = States.DeliveryState.literals

const SearchForm = ({ query, onSearch }: { readonly query: EventQuery; readonly onSearch: (query: EventQuery) => void }) => {
  const [eventId, setEventId] = useState("")
  const [type, setType] = useState(query.type ?? "")
  const [key, setKey] = useState(query.key ?? "")
  const [destination, setDestination] = useState(query.destination ?? "")
  const [state, setState] = useState<string>(query.state ?? "")
  const [since, setSince] = useState(isoToLocalInput(query.since))
  const [until, setUntil] = useState(isoToLocalInput(query.until))
  const [problem, setProblem] = useState<string | null>(null)
  const id = useId()

  const submit = () => {
    const wantedId = eventId.trim()
    if (wantedId !== "") {
      if (!isEventId(wantedId)) {
        setProblem("That is not an event id: 1-128 letters, digits, '.', '_', ':' or '-'.")
        return
      }
      navigate(paths.event(wantedId))
      return
    }
    setProblem(null)
    const next = queryFromParams(
      new URLSearchParams({
        type: type.trim(),
        key: key.trim(),
        destination: destination.trim(),
        state,
        since: localInputToIso(since) ?? "",
        until: localInputToIso(until) ?? ""
      })
    )
    onSearch(query.limit === undefined ? next : { ...next, limit: query.limit })
  }

  const clear = () => {
    setEventId("")
    setType("")
    setKey("")
    setDestination("")
    setState("")
    setSince("")
    setUntil("")
    setProblem(null)
    onSearch({})
  }

  return (
    <form
      className="card search"
      role="search"
      aria-label="Search events"
      onSubmit={(event) => {
        event.preventDefault()
        submit()
      }}
    >
      <div className="fields">
        <Field id={`${id}-id`} label="Event id" value={eventId} onChange={setEventId} placeholder="opens the event" />
        <Field id={`${id}-type`} label="Type" value={type} onChange={setType} placeholder="order.created" />
        <Field id={`${id}-key`} label="Key" value={key} onChange={setKey} placeholder="order-123" />
        <Field id={`${id}-destination`} label="Destination" value={destination} onChange={setDestination} placeholder="destination id" />
        <div className="field">
          <label htmlFor={`${id}-state`}>Delivery state</label>
          <select id={`${id}-state`} value={state} onChange={(event) => setState(event.target.value)}>
            <option value="">any</option>
            {deliveryStates.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </div>
        <Field id={`${id}-since`} label="Received from" type="datetime-local" value={since} onChange={setSince} />
        <Field id={`${id}-until`} label="Received until" type="datetime-local" value={until} onChange={setUntil} />
      </div>
      {problem !== null && (
        <p className="error" role="alert">
          {problem}
        </p>
      )}
      <div className="buttons">
        <button type="submit" className="button primary">
          Search
        </button>
        <button type="button" className="button" onClick={clear}>
          Clear
        </button>
      </div>
    </form>
  )
}

const Field = ({
  id,
  label,
  value,
  onChange,
  type = "text",
  placeholder
}: {
  readonly id: string
  readonly label: string
  readonly value: string
  readonly onChange: (value: string) => void
  readonly type?: string
  readonly placeholder?: string
}) => (
  <div className="field">
    <label htmlFor={id}>{label}</label>
    <input id={id} type={type} value={value} placeholder={placeholder} onChange={(event) => onChange(event.target.value)} />
  </div>
)

/** The rows of one page; shared with a destination's recent deliveries. */
export const EventTable = ({
  page,
  filtered,
  destinationId,
  actions
}: {
  readonly page: History.EventPage
  readonly filtered: boolean
  /** Show only this destination's delivery (a destination's page). */
  readonly destinationId?: string
  /** Extra cell per row (replay buttons). */
  readonly actions?: (event: History.EventSummary) => ReactNode
}) =>
  page.items.length === 0 ? (
    <Empty>
      {filtered
        ? "No event matches this search. Widen the time range or clear a filter."
        : "No events yet. Publish one with `sluice publish` or the SDK and it shows up here."}
    </Empty>
  ) : (
    <div className="table-scroll">
      <table className="table events">
        <thead>
          <tr>
            <th scope="col">Event</th>
            <th scope="col">Type</th>
            <th scope="col">Key</th>
            <th scope="col">Received</th>
            <th scope="col">{destinationId === undefined ? "Deliveries" : "Delivery"}</th>
            {actions !== undefined && (
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            )}
          </tr>
        </thead>
        <tbody>
          {page.items.map((event) => (
            <tr key={event.id} data-event={event.id}>
              <td data-label="Event" className="mono">
                <Link to={paths.event(event.id)}>{event.id}</Link>
              </td>
              <td data-label="Type">{event.type}</td>
              <td data-label="Key">{event.key ?? "—"}</td>
              <td data-label="Received">{formatTime(event.receivedAt)}</td>
              <td data-label="Deliveries">
                <ul className="delivery-list">
                  {event.deliveries
                    .filter((d) => destinationId === undefined || d.destinationId === destinationId)
                    .map((d) => (
                      <li key={d.destinationId}>
                        {destinationId === undefined && <span className="dest">{d.destinationId}</span>}{" "}
                        <DeliveryBadge state={d.state} />{" "}
                        {d.attempts > 0 && (
                          <span className="note">
                            {d.attempts} attempt{d.attempts === 1 ? "" : "s"}
                          </span>
                        )}
                      </li>
                    ))}
                </ul>
                {event.deliveries.length === 0 && <span className="note">no subscriber</span>}
              </td>
              {actions !== undefined && <td data-label="">{actions(event)}</td>}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  )
