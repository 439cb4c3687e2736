/**
 * Sign in with the admin token. The token is checked against the broker before the session
 * starts, so a mistyped token is refused here rather than on the first page; a session the
 * broker later refuses comes back here with the reason.
 */
import { Effect } from "effect"
import { useId, useState } from "react"
import { verifyToken } from "./api.js"
import { signIn } from "./session.js"

type Check = { readonly _tag: "Idle" } | { readonly _tag: "Checking" } | { readonly _tag: "Refused"; readonly message: string }

export const LoginPage = ({ notice }: { readonly notice: string | null }) => {
  const [token, setToken] = useState("")
  const [check, setCheck] = useState<Check>({ _tag: "Idle" })
  const inputId = useId()
  const hintId = useId()

  const submit = () => {
    const candidate = token.trim()
    if (candidate === "") {
      setCheck({ _tag: "Refused", message: "Enter the admin token." })
      return
    }
    setCheck({ _tag: "Checking" })
    Effect.runFork(
      verifyToken(candidate).pipe(
        Effect.match({
          onSuccess: () => signIn(candidate),
          onFailure: (problem) =>
            setCheck({
              _tag: "Refused",
              message: problem.unauthorized ? "The broker refused this token (HTTP 401). Check it and try again." : problem.message
            })
        })
      )
    )
  }

  const message = check._tag === "Refused" ? check.message : notice
  return (
    <main className="login">
      <form
        className="card login-card"
        onSubmit={(event) => {
          event.preventDefault()
          submit()
        }}
      >
        <h1>Sluice</h1>
        <p className="note">Sign in to the admin console.</p>
        {message !== null && (
          <p className="error" role="alert">
            {message}
          </p>
        )}
        <label htmlFor={inputId}>Admin token</label>
        <input
          id={inputId}
          name="token"
          type="password"
          autoComplete="current-password"
          aria-describedby={hintId}
          value={token}
          onChange={(event) => setToken(event.target.value)}
          autoFocus
        />
        <p id={hintId} className="hint">
          The broker's <code>SLUICE_ADMIN_TOKEN</code>, or when that is not set the one it generated into{" "}
          <code>admin-token</code> in its data directory (<code>.sluice/admin-token</code> by default). It is kept for
          this browser tab only.
        </p>
        <button type="submit" className="button primary" disabled={check._tag === "Checking"}>
          {check._tag === "Checking" ? "Checking…" : "Sign in"}
        </button>
      </form>
    </main>
  )
}
