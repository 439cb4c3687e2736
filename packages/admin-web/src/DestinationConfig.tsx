/**
 * A destination's configuration: where it sends, what it subscribes to, its policies, and
 * its signing secret masked. Rate limit and concurrency are the knobs an operator turns
 * during an incident, so they can be changed here; rotating the secret shows the new one
 * exactly once.
 */
import type { Destination } from "@sluice/protocol"
import { useId, useState } from "react"
import { ConfirmDialog } from "./ConfirmDialog.js"
import { formatDuration, formatRateLimit, formatTime } from "./format.js"
import { useAction } from "./useApi.js"

export const DestinationConfig = ({
  destination: d,
  onChanged
}: {
  readonly destination: Destination.DestinationView
  readonly onChanged: () => void
}) => (
  <section className="card" aria-labelledby="config-title">
    <h2 id="config-title">Configuration</h2>
    <dl className="facts">
      <dt>URL</dt>
      <dd className="url">{d.url}</dd>
      <dt>Subscriptions</dt>
      <dd>
        {d.subscriptions.map((s) => (
          <code key={s} className="chip">
            {s}
          </code>
        ))}
      </dd>
      <dt>Rate limit</dt>
      <dd>{formatRateLimit(d.rateLimit)}</dd>
      <dt>Max concurrency</dt>
      <dd>{d.maxConcurrency}</dd>
      <dt>Ordering</dt>
      <dd>{d.ordering === "key" ? "one in flight per key" : "none"}</dd>
      <dt>Latest only</dt>
      <dd>{d.latestOnly ? "yes: newer events cancel queued older ones for the key" : "no"}</dd>
      <dt>Timeout</dt>
      <dd>{formatDuration(d.timeoutMs)}</dd>
      <dt>Retries</dt>
      <dd>
        up to {d.retry.maxAttempts} attempts or {formatDuration(d.retry.maxAgeMs)}; back-off from{" "}
        {formatDuration(d.retry.initialMs)} ×{d.retry.factor} to {formatDuration(d.retry.maxMs)}
      </dd>
      <dt>Batching</dt>
      <dd>{d.batch === null ? "off" : `up to ${d.batch.maxEvents} events, waiting ${formatDuration(d.batch.maxWaitMs)}`}</dd>
      <dt>Signing secret</dt>
      <dd>
        <SecretView destination={d} />
      </dd>
      <dt>Updated</dt>
      <dd>{formatTime(d.updatedAt)}</dd>
    </dl>
    <LimitsForm destination={d} onSaved={onChanged} />
  </section>
)

/** The hint the API gives (never the secret), and rotation with the new secret shown once. */
const SecretView = ({ destination }: { readonly destination: Destination.DestinationView }) => {
  const [confirming, setConfirming] = useState(false)
  const [secret, setSecret] = useState<string | null>(null)
  const action = useAction()
  const close = () => {
    setConfirming(false)
    action.reset()
  }
  const rotate = async () => {
    const answer = await action.run((client) => client.destinations.rotateSecret({ path: { id: destination.id } }))
    if (answer === undefined) return
    close()
    setSecret(answer.secret)
  }
  return (
    <>
      <code aria-label="Signing secret, masked">{destination.secretHint}</code>{" "}
      <button type="button" className="button small" onClick={() => setConfirming(true)}>
        Rotate secret
      </button>
      {secret !== null && (
        <div className="secret" role="status">
          <p>
            <strong>New signing secret — shown only now.</strong> Give it to the receiver; deliveries are signed with it
            from now on.
          </p>
          <code className="mono" data-testid="new-secret">
            {secret}
          </code>{" "}
          <button type="button" className="button small" onClick={() => void navigator.clipboard?.writeText(secret)}>
            Copy
          </button>{" "}
          <button type="button" className="button small" onClick={() => setSecret(null)}>
            I have saved it
          </button>
        </div>
      )}
      {confirming && (
        <ConfirmDialog
          title="Rotate the signing secret?"
          confirmLabel="Rotate secret"
          danger
          state={action.state}
          onConfirm={() => void rotate()}
          onCancel={close}
        >
          <p>
            A new secret is generated and every delivery to <strong>{destination.name}</strong> is signed with it from now
            on. Until the receiver has the new secret it will reject the signatures. The new secret is shown once, right
            after this.
          </p>
        </ConfirmDialog>
      )}
    </>
  )
}

const positiveNumber = (text: string): number | undefined => {
  const n = Number(text)
  return text.trim() !== "" && Number.isFinite(n) && n > 0 ? n : undefined
}

/**
 * Edits the rate limit and concurrency with a PATCH; the API checks the ranges and names a
 * bad field. The fields start from the configuration when the page opens and then keep what
 * the operator typed (a refresh does not overwrite them).
 */
const LimitsForm = ({ destination: d, onSaved }: { readonly destination: Destination.DestinationView; readonly onSaved: () => void }) => {
  const [limited, setLimited] = useState(d.rateLimit !== null)
  const [perSecond, setPerSecond] = useState(String(d.rateLimit?.perSecond ?? 10))
  const [burst, setBurst] = useState(String(d.rateLimit?.burst ?? 10))
  const [concurrency, setConcurrency] = useState(String(d.maxConcurrency))
  const [problem, setProblem] = useState<string | null>(null)
  const action = useAction()
  const id = useId()

  const save = async () => {
    const rate = positiveNumber(perSecond)
    const burstN = positiveNumber(burst)
    const maxConcurrency = positiveNumber(concurrency)
    if (limited && (rate === undefined || burstN === undefined || !Number.isInteger(burstN))) {
      setProblem("The rate must be a number above 0 and the burst a whole number above 0.")
      return
    }
    if (maxConcurrency === undefined || !Number.isInteger(maxConcurrency)) {
      setProblem("Max concurrency must be a whole number above 0.")
      return
    }
    setProblem(null)
    const rateLimit = limited && rate !== undefined && burstN !== undefined ? { perSecond: rate, burst: burstN } : null
    const answer = await action.run((client) =>
      client.destinations.update({ path: { id: d.id }, payload: { rateLimit, maxConcurrency } })
    )
    if (answer !== undefined) onSaved()
  }

  const message = problem ?? (action.state._tag === "Failed" ? action.state.message : null)
  return (
    <form
      className="limits"
      aria-labelledby={`${id}-title`}
      onSubmit={(event) => {
        event.preventDefault()
        void save()
      }}
    >
      <h3 id={`${id}-title`}>Change limits</h3>
      <div className="fields">
        <label className="choice">
          <input type="checkbox" checked={limited} onChange={(event) => setLimited(event.target.checked)} /> Rate limited
        </label>
        <div className="field">
          <label htmlFor={`${id}-rate`}>Requests per second</label>
          <input
            id={`${id}-rate`}
            type="number"
            min="0"
            step="any"
            inputMode="decimal"
            disabled={!limited}
            value={perSecond}
            onChange={(event) => setPerSecond(event.target.value)}
          />
        </div>
        <div className="field">
          <label htmlFor={`${id}-burst`}>Burst</label>
          <input
            id={`${id}-burst`}
            type="number"
            min="1"
            step="1"
            disabled={!limited}
            value={burst}
            onChange={(event) => setBurst(event.target.value)}
          />
        </div>
        <div className="field">
          <label htmlFor={`${id}-concurrency`}>Max concurrency</label>
          <input
            id={`${id}-concurrency`}
            type="number"
            min="1"
            step="1"
            value={concurrency}
            onChange={(event) => setConcurrency(event.target.value)}
          />
        </div>
      </div>
      <div className="buttons">
        <button type="submit" className="button primary" disabled={action.state._tag === "Running"}>
          {action.state._tag === "Running" ? "Saving…" : "Save limits"}
        </button>
        {action.state._tag === "Done" && (
          <span className="success" role="status">
            Saved.
          </span>
        )}
      </div>
      {message !== null && (
        <p className="error" role="alert">
          {message}
        </p>
      )}
    </form>
  )
}
