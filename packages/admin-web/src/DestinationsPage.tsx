/**
 * The overview an operator opens during an incident: every destination, trouble on top,
 * with its health, rate limit, backlog, delivered and failed counts, latency and the last
 * hour's attempts — kept live by the broker's event stream.
 */
import type { Destination, History } from "@sluice/protocol"
import { useCallback } from "react"
import type { AdminClient } from "./api.js"
import { Sparkline } from "./Charts.js"
import { formatAgo, formatCount, formatPercentiles, formatRateLimit, latencyToShow } from "./format.js"
import { HealthBadge } from "./HealthBadge.js"
import { Empty, RemoteView } from "./Notice.js"
import { Link } from "./Router.js"
import { paths } from "./routes.js"
import { sortByTrouble } from "./trouble.js"
import { useApi, useNow } from "./useApi.js"
import type { LiveMode } from "./useLiveDestinations.js"
import { useLiveDestinations } from "./useLiveDestinations.js"

const STATS_EVERY_MS = 5_000

const modeText: Record<LiveMode, string> = {
  connecting: "Connecting…",
  live: "Live",
  polling: "Live updates unavailable — refreshing every 5 s"
}

export const DestinationsPage = ({ token }: { readonly token: string }) => {
  const { remote, mode } = useLiveDestinations(token)
  const now = useNow(1_000)
  return (
    <>
      <div className="page-title">
        <h1>Destinations</h1>
        <span className={`live live-${mode}`} role="status">
          {modeText[mode]}
        </span>
      </div>
      <RemoteView remote={remote}>
        {(destinations) =>
          destinations.length === 0 ? (
            <Empty>
              No destinations yet. Add one with <code>sluice destinations add --url … --subscribe …</code> or{" "}
              <code>POST /api/v1/destinations</code>.
            </Empty>
          ) : (
            <table className="table destinations">
              <caption className="visually-hidden">Destinations, the ones in trouble first</caption>
              <thead>
                <tr>
                  <th scope="col">Destination</th>
                  <th scope="col">Health</th>
                  <th scope="col">Rate limit</th>
                  <th scope="col" className="num">
                    Backlog
                  </th>
                  <th scope="col" className="num">
                    Delivered
                  </th>
                  <th scope="col" className="num">
                    Failed
                  </th>
                  <th scope="col">Latency</th>
                  <th scope="col">Last hour</th>
                </tr>
              </thead>
              <tbody>
                {sortByTrouble(destinations).map((d) => (
                  <DestinationRow key={d.id} destination={d} now={now} />
                ))}
              </tbody>
            </table>
          )
        }
      </RemoteView>
    </>
  )
}

const DestinationRow = ({ destination: d, now }: { readonly destination: Destination.DestinationView; readonly now: number }) => {
  const id = d.id
  const request = useCallback((client: AdminClient) => client.destinations.stats({ path: { id } }), [id])
  const [stats] = useApi(request, { refreshMs: STATS_EVERY_MS })
  const value = stats._tag === "Loaded" ? stats.value : undefined
  const missing = stats._tag === "Failed" ? "unavailable" : "…"
  return (
    <tr data-destination={d.id} data-health={d.health.state}>
      <td data-label="Destination">
        <Link to={paths.destination(d.id)} className="strong">
          {d.name}
        </Link>
        <div className="url">{d.url}</div>
      </td>
      <td data-label="Health">
        <HealthBadge state={d.health.state} />{" "}
        <span className="note" title={d.health.since}>
          {formatAgo(d.health.since, now)}
        </span>
        {d.health.reason !== "" && <div className="reason">{d.health.reason}</div>}
      </td>
      <td data-label="Rate limit">{formatRateLimit(d.rateLimit)}</td>
      <td data-label="Backlog" className="num" data-testid="backlog">
        {value === undefined ? missing : formatCount(value.backlog.pending + value.backlog.held)}
      </td>
      <td data-label="Delivered" className="num">
        {value === undefined ? missing : formatCount(value.states.completed)}
      </td>
      <td data-label="Failed" className={value !== undefined && value.states.dead > 0 ? "num bad" : "num"}>
        {value === undefined ? missing : formatCount(value.states.dead)}
      </td>
      <td data-label="Latency">{value === undefined ? missing : <Latency latency={value.latency} />}</td>
      <td data-label="Last hour">{value === undefined ? missing : <Sparkline points={value.throughput} />}</td>
    </tr>
  )
}

const Latency = ({ latency }: { readonly latency: History.DestinationStats["latency"] }) => {
  const window = latencyToShow(latency)
  return (
    <>
      {formatPercentiles(window)}
      {window !== undefined && <span className="note"> ({window.window})</span>}
    </>
  )
}
