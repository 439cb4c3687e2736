/**
 * The operator's admin token. It lives in session storage: it survives a reload but not
 * closing the tab, and it never appears in the address bar (only the live stream's request
 * carries it in its query, as EventSource cannot send headers). A refused token ends the
 * session with a notice that the login page shows.
 */
import { useSyncExternalStore } from "react"

const KEY = "sluice.adminToken"

export interface Session {
  /** null: signed out, the login page shows. */
  readonly token: string | null
  /** Why the operator was signed out, for the login page. */
  readonly notice: string | null
}

const read = (): string | null => {
  try {
    return window.sessionStorage.getItem(KEY)
  } catch {
    return null
  }
}

let current: Session = { token: read(), notice: null }
const listeners = new Set<() => void>()

const set = (next: Session) => {
  current = next
  for (const listener of listeners) listener()
}

/** The token every admin API request carries, read at request time. */
export const currentToken = (): string | null => current.token

export const signIn = (token: string) => {
  try {
    window.sessionStorage.setItem(KEY, token)
  } catch {
    // Storage may be off (private mode): the session then lasts as long as the page.
  }
  set({ token, notice: null })
}

export const signOut = (notice: string | null = null) => {
  try {
    window.sessionStorage.removeItem(KEY)
  } catch {
    // Nothing stored, nothing to remove.
  }
  set({ token: null, notice })
}

const subscribe = (listener: () => void) => {
  listeners.add(listener)
  return () => {
    listeners.delete(listener)
  }
}

export const useSession = (): Session => useSyncExternalStore(subscribe, () => current)
