/**
 * What operators (and the broker on their behalf) did — pauses, replays, secret rotations,
 * configuration changes — newest first, a page at a time, optionally for one destination.
 */
import type { History } from "@sluice/protocol"
import { useCallback, useId, useState } from "react"
import type { AdminClient } from "./api.js"
import { formatTime, prettyJson } from "./format.js"
import { Empty, RemoteView } from "./Notice.js"
import { Link } from "./Router.js"
import { paths } from "./routes.js"
import { useApi } from "./useApi.js"

const PAGE_SIZE = 50

interface AuditSearch {
  readonly destination?: string
  readonly cursor?: string
}

export const AuditPage = () => {
  const [search, setSearch] = useState<AuditSearch>({})
  const [draft, setDraft] = useState("")
  const id = useId()
  const { destination, cursor } = search
  const request = useCallback(
    (client: AdminClient) => client.audit.list({ urlParams: { destination, cursor, limit: PAGE_SIZE } }),
    [destination, cursor]
  )
  const [page, reload] = useApi(request)
  return (
    <>
      <h1>Audit log</h1>
      <form
        className="card search inline"
        role="search"
        aria-label="Filter the audit log"
        onSubmit={(event) => {
          event.preventDefault()
          setSearch(draft.trim() === "" ? {} : { destination: draft.trim() })
        }}
      >
        <div className="field">
          <label htmlFor={`${id}-destination`}>Destination</label>
          <input id={`${id}-destination`} value={draft} placeholder="all" onChange={(event) => setDraft(event.target.value)} />
        </div>
        <div className="buttons">
          <button type="submit" className="button primary">
            Filter
          </button>
        </div>
      </form>
      <RemoteView remote={page} onRetry={reload}>
        {(value) => (
          <>
            <AuditTable page={value} filtered={destination !== undefined} />
            <nav className="pager" aria-label="Pages">
              <button
                type="button"
                className="button"
                disabled={cursor === undefined}
                onClick={() => setSearch({ destination })}
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
                onClick={() => value.nextCursor !== null && setSearch({ destination, cursor: value.nextCursor })}
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

/** Short details inline; long ones (a whole configuration) folded, so the log stays scannable. */
const Details = ({ value }: { readonly value: unknown }) => {
  if (value === null || value === undefined || (typeof value === "object" && Object.keys(value).length === 0)) return null
  const text = JSON.stringify(value)
  return text.length <= 100 ? (
    <code className="details">{text}</code>
  ) : (
    <details>
      <summary>Show details</summary>
      <pre className="json">{prettyJson(value)}</pre>
    </details>
  )
}

const AuditTable = ({ page, filtered }: { readonly page: History.AuditPage; readonly filtered: boolean }) =>
  page.items.length === 0 ? (
    <Empty>
      {filtered
        ? "Nothing was done to this destination yet."
        : "No operator actions yet. Pausing, resuming, replaying or changing a destination is recorded here."}
    </Empty>
  ) : (
    <div className="table-scroll">
      <table className="table audit">
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">Who</th>
            <th scope="col">Action</th>
            <th scope="col">Destination</th>
            <th scope="col">Details</th>
          </tr>
        </thead>
        <tbody>
          {page.items.map((entry) => (
            <tr key={entry.id}>
              <td data-label="When" className="nowrap">
                {formatTime(entry.at)}
              </td>
              <td data-label="Who">{entry.actor}</td>
              <td data-label="Action">
                <strong>{entry.action}</strong>
              </td>
              <td data-label="Destination">
                {entry.destinationId === null ? (
                  "—"
                ) : (
                  <Link to={paths.destination(entry.destinationId)}>{entry.destinationId}</Link>
                )}
              </td>
              <td data-label="Details">
                <Details value={entry.details} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  )
