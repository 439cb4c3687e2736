/**
 * One destination: its health and what an operator can do about it (pause, resume, enable,
 * disable, replay), the numbers and charts, the health timeline, its configuration and its
 * recent deliveries.
 */
import type { Destination, History, States } from "@sluice/protocol"
import { useCallback, useState } from "react"
import type { AdminClient } from "./api.js"
import { ThroughputChart } from "./Charts.js"
import { ConfirmDialog } from "./ConfirmDialog.js"
import { DestinationConfig } from "./DestinationConfig.js"
import { formatAgo, formatCount, formatDuration, formatTime } from "./format.js"
import { HealthBadge } from "./HealthBadge.js"
import { HealthTimeline } from "./HealthTimeline.js"
import { RemoteView } from "./Notice.js"
import { RecentDeliveries } from "./RecentDeliveries.js"
import { ReplayPanel } from "./ReplayPanel.js"
import { Link } from "./Router.js"
import { paths } from "./routes.js"
import { useAction, useApi, useNow } from "./useApi.js"

const REFRESH_MS = 3_000

export const DestinationPage = ({ id }: { readonly id: string }) => {
  const getDestination = useCallback((client: AdminClient) => client.destinations.get({ path: { id } }), [id])
  const getStats = useCallback((client: AdminClient) => client.destinations.stats({ path: { id } }), [id])
  const [destination, reloadDestination] = useApi(getDestination, { refreshMs: REFRESH_MS })
  const [stats, reloadStats] = useApi(getStats, { refreshMs: REFRESH_MS })
  const reload = useCallback(() => {
    reloadDestination()
    reloadStats()
  }, [reloadDestination, reloadStats])
  return (
    <>
      <p className="breadcrumbs">
        <Link to={paths.destinations}>Destinations</Link> /
      </p>
      <RemoteView remote={destination} onRetry={reloadDestination}>
        {(d) => (
          <>
            <Header destination={d} onChanged={reload} />
            <RemoteView remote={stats} onRetry={reloadStats}>
              {(s) => <StatsView stats={s} destination={d} />}
            </RemoteView>
            <HealthTimeline destination={d} />
            <ReplayPanel destination={d} onReplayed={reload} />
            <DestinationConfig destination={d} onChanged={reloadDestination} />
            <RecentDeliveries destinationId={d.id} />
          </>
        )}
      </RemoteView>
    </>
  )
}

type HealthAction = "pause" | "resume" | "enable" | "disable"

/** What an operator can do from each state. */
export const healthActions = (state: States.HealthState): ReadonlyArray<HealthAction> => {
  switch (state) {
    case "active":
    case "down":
    case "recovering":
      return ["pause", "disable"]
    case "paused":
      return ["resume", "disable"]
    case "disabled":
      return ["enable"]
  }
}

const actionText: Record<
  HealthAction,
  { readonly button: string; readonly title: string; readonly confirm: string; readonly danger: boolean }
> = {
  pause: { button: "Pause", title: "Pause deliveries?", confirm: "Pause deliveries", danger: false },
  resume: { button: "Resume", title: "Resume deliveries?", confirm: "Resume deliveries", danger: false },
  enable: { button: "Enable", title: "Enable destination?", confirm: "Enable destination", danger: false },
  disable: { button: "Disable", title: "Disable destination?", confirm: "Disable destination", danger: true }
}

const Explanation = ({ action, destination }: { readonly action: HealthAction; readonly destination: Destination.DestinationView }) => {
  const name = <strong>{destination.name}</strong>
  switch (action) {
    case "pause":
      return (
        <p>
          Sluice stops sending to {name}. New events for it wait in JetStream, nothing is lost and no retries are used
          up. Resume delivers the backlog, oldest first.
        </p>
      )
    case "resume":
      return (
        <p>
          Sluice starts sending to {name} again: the events that waited while it was paused are delivered first, oldest
          first, at its rate limit.
        </p>
      )
    case "enable":
      return (
        <p>
          {name} becomes active: events from now on are delivered. Events recorded as <em>disabled</em> while it was off
          are not sent — replay them from this page if the receiver needs them.
        </p>
      )
    case "disable":
      return (
        <p>
          Sluice stops sending to {name}, and new events for it are recorded as <em>disabled</em> instead of waiting. To
          keep them for later, pause instead.
        </p>
      )
  }
}

const Header = ({ destination: d, onChanged }: { readonly destination: Destination.DestinationView; readonly onChanged: () => void }) => {
  const [pending, setPending] = useState<HealthAction | null>(null)
  const [reason, setReason] = useState("")
  const action = useAction()
  const now = useNow(1_000)
  const close = () => {
    setPending(null)
    setReason("")
    action.reset()
  }
  const confirm = async (which: HealthAction) => {
    const path = { path: { id: d.id } }
    const result = await action.run((client) => {
      switch (which) {
        case "pause":
          return client.destinations.pause(path)
        case "resume":
          return client.destinations.resume(path)
        case "enable":
          return client.destinations.enable(path)
        case "disable":
          return client.destinations.disable({ ...path, payload: { reason: reason.trim() } })
      }
    })
    if (result === undefined) return
    close()
    onChanged()
  }
  return (
    <header className="destination-head">
      <div>
        <h1>
          {d.name} <HealthBadge state={d.health.state} />
        </h1>
        <p className="note">
          <span className="mono">{d.id}</span> · {d.health.state} since{" "}
          <time dateTime={d.health.since} title={formatTime(d.health.since)}>
            {formatAgo(d.health.since, now)}
          </time>
          {d.health.reason !== "" && <> — {d.health.reason}</>}
        </p>
      </div>
      <div className="buttons" role="group" aria-label="Health actions">
        {healthActions(d.health.state).map((which) => (
          <button
            key={which}
            type="button"
            className={actionText[which].danger ? "button danger-outline" : "button primary"}
            onClick={() => setPending(which)}
          >
            {actionText[which].button}
          </button>
        ))}
      </div>
      {pending !== null && (
        <ConfirmDialog
          title={actionText[pending].title}
          confirmLabel={actionText[pending].confirm}
          danger={actionText[pending].danger}
          state={action.state}
          onConfirm={() => void confirm(pending)}
          onCancel={close}
        >
          <Explanation action={pending} destination={d} />
          {pending === "disable" && (
            <div className="field">
              <label htmlFor="disable-reason">Reason (recorded in the health timeline)</label>
              <input
                id="disable-reason"
                value={reason}
                maxLength={500}
                onChange={(event) => setReason(event.target.value)}
              />
            </div>
          )}
        </ConfirmDialog>
      )}
    </header>
  )
}

/**
 * Events the destination will never get, not yet reported to it: the receiver has to
 * reconcile, and will be told so with a `sluice.sync_error` event once it can take one.
 */
export const LostEventsAlert = ({ lost }: { readonly lost: Destination.LostEvents }) => {
  const parts = (
    [
      ["dead-lettered", lost.dead],
      ["dropped while disabled", lost.disabled],
      ["expired from the stream", lost.expired]
    ] as const
  ).filter(([, n]) => n > 0)
  const total = lost.dead + lost.disabled + lost.expired
  return (
    <div className="alert" role="alert">
      <strong>Sync error:</strong> {formatCount(total)} event{total === 1 ? "" : "s"} lost to this destination (
      {parts.map(([what, n]) => `${formatCount(n)} ${what}`).join(", ")}), published between{" "}
      <time dateTime={lost.since}>{formatTime(lost.since)}</time> and <time dateTime={lost.until}>{formatTime(lost.until)}</time>.
      A <code>sluice.sync_error</code> event will tell the receiver as soon as it can take deliveries.
    </div>
  )
}

const StatsView = ({ stats, destination }: { readonly stats: History.DestinationStats; readonly destination: Destination.DestinationView }) => {
  const backlog = stats.backlog.pending + stats.backlog.held
  return (
    <>
      {stats.states.dead > 0 && (
        <div className="alert" role="alert">
          <strong>Sync error:</strong> {formatCount(stats.states.dead)} deliver{stats.states.dead === 1 ? "y is" : "ies are"}{" "}
          dead-lettered — {destination.name} missed {stats.states.dead === 1 ? "that event" : "those events"}. Replay them
          below, or have the receiver re-sync.{" "}
          <Link to={paths.events(new URLSearchParams({ destination: destination.id, state: "dead" }))}>Show them</Link>
        </div>
      )}
      {destination.lostEvents !== undefined && <LostEventsAlert lost={destination.lostEvents} />}
      {destination.health.state === "disabled" && (
        <div className="alert" role="status">
          Disabled: new events for this destination are recorded as <em>disabled</em> and not delivered.
        </div>
      )}
      <section className="stats" aria-label="Delivery numbers">
        <Stat label="Backlog" value={formatCount(backlog)} detail={`${stats.backlog.pending} waiting, ${stats.backlog.held} in hand`} />
        <Stat label="Delivered" value={formatCount(stats.states.completed)} />
        <Stat label="Failed (dead)" value={formatCount(stats.states.dead)} bad={stats.states.dead > 0} />
        <Stat label="Retrying" value={formatCount(stats.states.errored)} />
        <Stat label="Queued" value={formatCount(stats.states.queued + stats.states.processing)} />
        <Stat
          label="Runs on"
          value={destination.owner ?? "—"}
          detail={destination.owner === undefined ? "no broker process holds it right now" : "broker process"}
          compact
        />
        {stats.latency.map((l) => (
          <Stat
            key={l.window}
            label={`Latency ${l.window}`}
            value={l.count === 0 ? "—" : `${formatDuration(l.p50Ms)} · ${formatDuration(l.p99Ms)}`}
            detail={l.count === 0 ? "no attempts" : `p50 · p99 of ${formatCount(l.count)} attempts`}
            compact
          />
        ))}
      </section>
      <section className="card" aria-labelledby="throughput-title">
        <h2 id="throughput-title">Throughput and errors, last hour</h2>
        {stats.throughput.every((p) => p.succeeded + p.failed === 0) ? (
          <p className="note empty">No attempts in the last hour.</p>
        ) : (
          <ThroughputChart points={stats.throughput} />
        )}
      </section>
    </>
  )
}

const Stat = ({
  label,
  value,
  detail,
  bad,
  compact
}: {
  readonly label: string
  readonly value: string
  readonly detail?: string
  readonly bad?: boolean
  /** Two numbers in one value: a smaller type so they fit. */
  readonly compact?: boolean
}) => (
  <div className="stat">
    <div className="stat-label">{label}</div>
    <div className={["stat-value", bad === true ? "bad" : "", compact === true ? "compact" : ""].join(" ").trim()} data-stat={label}>
      {value}
    </div>
    {detail !== undefined && <div className="note">{detail}</div>}
  </div>
)
