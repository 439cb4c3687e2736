/**
 * The charts, drawn with recharts: where operators would rather look than read — throughput
 * and errors per minute, and a destination's health as bands over time. Each carries a text
 * label with the gist for screen readers; the numbers are also on the page as text.
 */
import type { History, States } from "@sluice/protocol"
import {
  Area,
  AreaChart,
  Bar,
  BarChart,
  CartesianGrid,
  ComposedChart,
  Legend,
  Line,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis
} from "recharts"
import { formatDuration, formatTime } from "./format.js"
import type { HealthBand } from "./healthBands.js"

type ThroughputPoint = typeof History.ThroughputPoint.Type

export const colors = {
  succeeded: "#27ab83",
  failed: "#e12d39",
  errorRate: "#8a041a",
  health: {
    active: "#3ebd93",
    recovering: "#f7c948",
    down: "#e12d39",
    paused: "#47a3f3",
    disabled: "#9aa5b1"
  } satisfies Record<States.HealthState, string>
}

const totals = (points: ReadonlyArray<ThroughputPoint>) =>
  points.reduce((sum, p) => ({ succeeded: sum.succeeded + p.succeeded, failed: sum.failed + p.failed }), {
    succeeded: 0,
    failed: 0
  })

/** The last hour of attempts in a table cell: successes over failures. */
export const Sparkline = ({ points }: { readonly points: ReadonlyArray<ThroughputPoint> }) => {
  const sum = totals(points)
  return (
    <div
      className="sparkline"
      role="img"
      aria-label={`Last hour: ${sum.succeeded} successful and ${sum.failed} failed attempts`}
      title={`Last hour: ${sum.succeeded} ok, ${sum.failed} failed`}
    >
      <AreaChart width={120} height={32} data={[...points]} margin={{ top: 2, right: 0, bottom: 2, left: 0 }}>
        <YAxis hide domain={[0, "dataMax"]} />
        <Area
          type="monotone"
          dataKey="succeeded"
          stackId="a"
          stroke={colors.succeeded}
          fill={colors.succeeded}
          fillOpacity={0.35}
          isAnimationActive={false}
        />
        <Area
          type="monotone"
          dataKey="failed"
          stackId="a"
          stroke={colors.failed}
          fill={colors.failed}
          fillOpacity={0.5}
          isAnimationActive={false}
        />
      </AreaChart>
    </div>
  )
}

const clock = (iso: string) => new Date(iso).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })

/** Time axis labels as fine as the span needs: seconds for minutes, the day for a week. */
const timeTick = (spanMs: number) => (at: number) => {
  const date = new Date(at)
  if (spanMs <= 10 * 60_000) return date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" })
  if (spanMs <= 24 * 3600_000) return date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })
  return date.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" })
}

/** Attempts per minute (stacked successes and failures) with the error rate on its own axis. */
export const ThroughputChart = ({ points }: { readonly points: ReadonlyArray<ThroughputPoint> }) => {
  const sum = totals(points)
  const data = points.map((p) => ({
    minute: clock(p.at),
    succeeded: p.succeeded,
    failed: p.failed,
    errorRate: p.succeeded + p.failed === 0 ? null : Math.round((p.failed / (p.succeeded + p.failed)) * 1000) / 10
  }))
  return (
    <figure
      className="chart"
      role="img"
      aria-label={`Attempts per minute over the last hour: ${sum.succeeded} successful, ${sum.failed} failed`}
    >
      <ResponsiveContainer width="100%" height={220}>
        <ComposedChart data={data} margin={{ top: 8, right: 8, bottom: 0, left: 0 }}>
          <CartesianGrid strokeDasharray="3 3" vertical={false} />
          <XAxis dataKey="minute" minTickGap={24} tick={{ fontSize: 12 }} />
          <YAxis yAxisId="count" allowDecimals={false} width={40} tick={{ fontSize: 12 }} />
          <YAxis yAxisId="rate" orientation="right" domain={[0, 100]} unit="%" width={44} tick={{ fontSize: 12 }} />
          <Tooltip />
          <Legend />
          <Bar yAxisId="count" dataKey="succeeded" name="Succeeded" stackId="n" fill={colors.succeeded} isAnimationActive={false} />
          <Bar yAxisId="count" dataKey="failed" name="Failed" stackId="n" fill={colors.failed} isAnimationActive={false} />
          <Line
            yAxisId="rate"
            dataKey="errorRate"
            name="Error rate"
            unit="%"
            stroke={colors.errorRate}
            dot={false}
            connectNulls
            isAnimationActive={false}
          />
        </ComposedChart>
      </ResponsiveContainer>
    </figure>
  )
}

interface BandTooltipProps {
  readonly active?: boolean
  readonly payload?: ReadonlyArray<{ readonly dataKey?: unknown }>
}

/** The hovered band: recharts hands the tooltip the segment's data key, `b<index>`. */
const BandTooltip = ({ active, payload, bands }: BandTooltipProps & { readonly bands: ReadonlyArray<HealthBand> }) => {
  const key = payload?.[0]?.dataKey
  if (active !== true || typeof key !== "string") return null
  const band = bands[Number(key.slice(1))]
  if (band === undefined) return null
  return (
    <div className="chart-tooltip">
      <strong>{band.state}</strong> for {formatDuration(band.end - band.start)}
      <br />
      {formatTime(new Date(band.start).toISOString())} – {formatTime(new Date(band.end).toISOString())}
      {band.reason !== "" && (
        <>
          <br />
          {band.reason}
        </>
      )}
    </div>
  )
}

/**
 * The health bands of a window as one horizontal stacked bar, a segment per band in its
 * state's colour; hovering a segment tells the state, its time span and why it began.
 */
export const HealthTimelineChart = ({
  bands,
  from,
  to
}: {
  readonly bands: ReadonlyArray<HealthBand>
  readonly from: number
  readonly to: number
}) => {
  const row: Record<string, number | string> = { name: "health" }
  bands.forEach((band, i) => {
    row[`b${i}`] = band.end - band.start
  })
  const summary = bands.map((b) => `${b.state} for ${formatDuration(b.end - b.start)}`).join(", then ")
  return (
    <figure className="chart" role="img" aria-label={`Health over the window: ${summary}`}>
      <ResponsiveContainer width="100%" height={90}>
        <BarChart layout="vertical" data={[row]} margin={{ top: 4, right: 16, bottom: 0, left: 16 }} barCategoryGap={0}>
          <XAxis
            type="number"
            domain={[0, to - from]}
            tickCount={6}
            tickFormatter={(offset: number) => timeTick(to - from)(from + offset)}
            tick={{ fontSize: 12 }}
          />
          <YAxis type="category" dataKey="name" hide />
          <Tooltip shared={false} cursor={false} content={<BandTooltip bands={bands} />} />
          {bands.map((band, i) => (
            <Bar key={i} dataKey={`b${i}`} stackId="health" fill={colors.health[band.state]} isAnimationActive={false} />
          ))}
        </BarChart>
      </ResponsiveContainer>
      <figcaption className="legend">
        {Object.entries(colors.health).map(([state, color]) => (
          <span key={state}>
            <span className="swatch" style={{ background: color }} aria-hidden="true" /> {state}
          </span>
        ))}
      </figcaption>
    </figure>
  )
}
