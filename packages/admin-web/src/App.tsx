/**
 * The admin app: the login page until the operator signs in, then the header with
 * navigation and the page the URL names.
 */
import type { AdminClient } from "./api.js"
import { AuditPage } from "./AuditPage.js"
import { DestinationPage } from "./DestinationPage.js"
import { DestinationsPage } from "./DestinationsPage.js"
import { EventPage } from "./EventPage.js"
import { EventsPage } from "./EventsPage.js"
import { LoginPage } from "./LoginPage.js"
import { Empty } from "./Notice.js"
import type { Route } from "./routes.js"
import { matchRoute, paths } from "./routes.js"
import { Link, useLocation } from "./Router.js"
import { signOut, useSession } from "./session.js"
import { useApi } from "./useApi.js"

const getInfo = (client: AdminClient) => client.system.info()

export const App = () => {
  const session = useSession()
  return session.token === null ? <LoginPage notice={session.notice} /> : <Console token={session.token} />
}

const sections = [
  { label: "Destinations", to: paths.destinations, pages: ["destinations", "destination"] },
  { label: "Events", to: paths.events(), pages: ["events", "event"] },
  { label: "Audit log", to: paths.audit, pages: ["audit"] }
] as const satisfies ReadonlyArray<{ label: string; to: string; pages: ReadonlyArray<Route["page"]> }>

const Console = ({ token }: { readonly token: string }) => {
  const location = useLocation()
  const route = matchRoute(location.pathname, location.search)
  const [info] = useApi(getInfo)
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="header">
        <span className="brand">Sluice</span>
        {info._tag === "Loaded" && <span className="version">v{info.value.version}</span>}
        <nav aria-label="Sections">
          {sections.map((section) => (
            <Link
              key={section.label}
              to={section.to}
              aria-current={(section.pages as ReadonlyArray<string>).includes(route.page) ? "page" : undefined}
            >
              {section.label}
            </Link>
          ))}
        </nav>
        <button type="button" className="button small sign-out" onClick={() => signOut()}>
          Sign out
        </button>
      </header>
      <main id="main" className="main">
        <Page route={route} token={token} />
      </main>
    </>
  )
}

const Page = ({ route, token }: { readonly route: Route; readonly token: string }) => {
  switch (route.page) {
    case "destinations":
      return <DestinationsPage token={token} />
    case "destination":
      return <DestinationPage key={route.id} id={route.id} />
    case "events":
      return <EventsPage search={route.search} />
    case "event":
      return <EventPage key={route.id} id={route.id} />
    case "audit":
      return <AuditPage />
    case "notFound":
      return (
        <>
          <h1>Not found</h1>
          <Empty>
            There is no page at <code>{route.path}</code>. <Link to={paths.destinations}>Go to the destinations</Link>.
          </Empty>
        </>
      )
  }
}
