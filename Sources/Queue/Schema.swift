import Foundation
import PostgresNIO

/// The queue's tables, created and migrated by framepipe itself (`Schema.migrate`), versioned in
/// `framepipe_schema`. Each migration runs once, in order, inside one transaction holding an
/// advisory lock, so several workers starting together migrate exactly once and a failed migration
/// leaves the previous version intact. A database at a newer version than this framepipe knows is
/// refused (an older binary must not write into a layout it does not understand).
///
/// Version 1 (documented in README, "Scale-out through PostgreSQL"):
///
/// - `framepipe_jobs`: one row per enqueued input. `state` is pending → running → done | failed;
///   `attempts` counts claims (the lease token: renewals and completion name it), `lease_until` is
///   when a running job counts as abandoned, `not_before` delays a retry.
/// - `framepipe_frames`: one row per kept frame of a done job, written in the same transaction that
///   marks the job done. `labels` is the top-k as jsonb (`[{"index":..,"label":..,"score":..}]`,
///   the same objects `framepipe run` prints); `embedding` is `real[]` (float4, the network's own
///   precision, no loss): SQL can index into it (`embedding[1]`) and cast it to pgvector's `vector`
///   without a decoding function, which `bytea` would need; the storage is the same 4 bytes a value.
public enum Schema {
    /// The version this framepipe writes.
    public static let currentVersion = 1

    /// Migration `i` takes the schema from version `i` to `i + 1` (one statement each: the
    /// extended query protocol takes no statement lists).
    static let migrations: [[String]] = [[
        """
        CREATE TABLE framepipe_jobs (
            id            bigserial PRIMARY KEY,
            input         text NOT NULL,
            state         text NOT NULL DEFAULT 'pending'
                          CHECK (state IN ('pending', 'running', 'done', 'failed')),
            attempts      integer NOT NULL DEFAULT 0,
            worker        text,
            lease_until   timestamptz,
            renewals      integer NOT NULL DEFAULT 0,
            not_before    timestamptz NOT NULL DEFAULT now(),
            enqueued_at   timestamptz NOT NULL DEFAULT now(),
            started_at    timestamptz,
            finished_at   timestamptz,
            seconds       double precision,
            frames        integer,
            error         text
        )
        """,
        "CREATE INDEX framepipe_jobs_claimable ON framepipe_jobs (id) WHERE state IN ('pending', 'running')",
        """
        CREATE TABLE framepipe_frames (
            job_id        bigint NOT NULL REFERENCES framepipe_jobs (id) ON DELETE CASCADE,
            frame         integer NOT NULL,
            pts           double precision,
            keyframe      boolean NOT NULL,
            labels        jsonb,
            embedding     real[],
            PRIMARY KEY (job_id, frame)
        )
        """,
        // A 1280-float embedding (5 KB) is stored out of line anyway; float32 noise does not
        // compress, so do not spend the server's CPU trying.
        "ALTER TABLE framepipe_frames ALTER COLUMN embedding SET STORAGE EXTERNAL",
    ]]

    /// The database's schema version without changing anything (nil: framepipe's tables do not
    /// exist yet; the first worker, `enqueue` or `jobs` creates them).
    public static func version(_ db: Database) throws -> Int? {
        try db.with { s in
            let exists = try s.query("SELECT to_regclass('framepipe_schema') IS NOT NULL")
            guard try exists.first!.decode(Bool.self) else { return nil }
            return try s.query("SELECT coalesce(max(version), 0) FROM framepipe_schema").first!.decode(Int.self)
        }
    }

    /// Brings the database to `currentVersion`; returns the version found before.
    @discardableResult
    public static func migrate(_ db: Database) throws -> Int {
        try db.transaction { s in
            // One key for framepipe's migrations (any constant; 0x66706970 is "fpip").
            try s.execute("SELECT pg_advisory_xact_lock(1718642032)")
            try s.execute("CREATE TABLE IF NOT EXISTS framepipe_schema (version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            let rows = try s.query("SELECT coalesce(max(version), 0) FROM framepipe_schema")
            let found = try rows.first!.decode(Int.self)
            if found > currentVersion {
                throw QueueError("\(db.url): the queue schema is at version \(found), newer than this framepipe's \(currentVersion): upgrade framepipe")
            }
            for v in found..<currentVersion {
                for statement in migrations[v] { try s.execute(PostgresQuery(unsafeSQL: statement)) }
                try s.execute("INSERT INTO framepipe_schema (version) VALUES (\(v + 1))")
            }
            return found
        }
    }
}
