/**
 * The relay's statements on `sluice_outbox`, one function each, through postgres.js. The
 * claim and the marks run in one transaction, so a row is marked sent only by the relay
 * holding its lock, and only while it is still unsent.
 */
import type postgres from "postgres"

/** A locked unsent row. `blocked` rows wait for an older row of their key that another relay holds. */
export interface ClaimedRow {
  readonly id: string
  readonly key: string | null
  /** The envelope JSON exactly as enqueued. */
  readonly envelope: string
  readonly blocked: boolean
}

/**
 * Locks up to `limit` of the oldest unsent rows that no other relay holds. A row of a key is
 * publishable only if every older unsent row of that key is locked by this claim too, so a
 * key's rows are never published out of order, whichever relays hold which of them; the
 * relay holding the oldest row of a key can always publish it.
 */
export const claimPending = (sql: postgres.Sql, limit: number) =>
  sql<Array<ClaimedRow>>`
    WITH locked AS (
      SELECT seq, id, key, envelope::text AS envelope
      FROM sluice_outbox
      WHERE sent_at IS NULL
      ORDER BY seq
      LIMIT ${limit}
      FOR UPDATE SKIP LOCKED
    )
    SELECT l.id, l.key, l.envelope,
      l.key IS NOT NULL AND EXISTS (
        SELECT 1 FROM sluice_outbox older
        WHERE older.key = l.key AND older.sent_at IS NULL AND older.seq < l.seq
          AND older.seq NOT IN (SELECT seq FROM locked)
      ) AS blocked
    FROM locked l
    ORDER BY l.seq`

/** Marks published rows sent; JetStream has them, so they are never published again. */
export const markSent = (sql: postgres.Sql, ids: ReadonlyArray<string>) =>
  sql`
    UPDATE sluice_outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL
    WHERE id IN ${sql([...ids])} AND sent_at IS NULL`

/** Records a failed attempt on a row that stays unsent, for operators looking at the table. */
export const markFailed = (sql: postgres.Sql, id: string, error: string) =>
  sql`
    UPDATE sluice_outbox SET attempts = attempts + 1, last_error = ${error}
    WHERE id = ${id} AND sent_at IS NULL`

/** Deletes up to `limit` rows sent longer than `retentionMs` ago; resolves with how many. */
export const deleteSent = (sql: postgres.Sql, retentionMs: number, limit: number) =>
  sql`
    DELETE FROM sluice_outbox WHERE id IN (
      SELECT id FROM sluice_outbox
      WHERE sent_at < now() - ${Math.round(retentionMs)}::bigint * interval '1 millisecond'
      LIMIT ${limit}
    )`.then((result) => result.count)

/** Whether the migration has been applied in the database the relay connects to. */
export const outboxExists = (sql: postgres.Sql) =>
  sql<Array<{ readonly exists: boolean }>>`SELECT to_regclass('sluice_outbox') IS NOT NULL AS exists`.then(
    (rows) => rows[0]?.exists === true
  )
