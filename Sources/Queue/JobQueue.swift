import Foundation
import PostgresNIO

/// A job a worker has claimed: run `input`, then complete or fail it naming `attempt` (the lease
/// token: a worker whose lease was taken over can no longer renew or fail the job).
public struct ClaimedJob: Sendable, Equatable {
    public let id: Int64
    public let input: String
    /// The claim count after this claim (1 on the first try).
    public let attempt: Int
    public init(id: Int64, input: String, attempt: Int) { self.id = id; self.input = input; self.attempt = attempt }
}

/// Counts from `framepipe_jobs`, for `framepipe jobs` and the metrics.
public struct QueueStatus: Sendable, Equatable {
    /// Jobs per state (pending, running, done, failed; absent states are 0).
    public var states: [String: Int] = [:]
    /// Frames stored for done jobs.
    public var frames = 0
    /// Per worker: jobs per state (running: held now; done: committed by it; pending/failed: it tried last).
    public var workers: [String: [String: Int]] = [:]
    /// Running jobs whose lease has run out (their worker is gone; the next claim takes them).
    public var expiredLeases = 0
    public func count(_ state: String) -> Int { states[state] ?? 0 }
}

/// What became of a finished result offered to the database.
public enum CompleteOutcome: Sendable, Equatable {
    /// The rows and the job's completion are committed.
    case committed
    /// Another worker committed the job first (it had taken over an expired lease), or the job was
    /// deleted: this result is dropped, the job's rows are the other's.
    case alreadyDone
}

/// The queue's statements on `framepipe_jobs` / `framepipe_frames` (schema in `Schema`).
///
/// Exactly once: a job is claimed with `FOR UPDATE SKIP LOCKED` (concurrent claimers never get the
/// same row), its frame rows are inserted in the transaction that marks it done, and that update
/// only succeeds while the job is not done yet; so of two workers that processed the same job
/// (the first one's lease expired) exactly one commits, and a job never has two sets of rows.
public final class JobQueue: @unchecked Sendable {
    public let db: Database
    public init(db: Database) { self.db = db }

    /// Adds jobs for `inputs` (in order); returns their ids.
    public func enqueue(_ inputs: [String]) throws -> [Int64] {
        try db.with { s in
            let rows = try s.query("""
                INSERT INTO framepipe_jobs (input)
                SELECT x FROM unnest(\(inputs)::text[]) WITH ORDINALITY AS t(x, n) ORDER BY n
                RETURNING id
                """)
            return try rows.map { try $0.decode(Int64.self) }.sorted()
        }
    }

    /// Claims the oldest claimable job for `worker`: a pending one whose retry delay has passed, or
    /// a running one whose lease expired (its worker died). Running jobs whose lease expired after
    /// `maxAttempts` claims are marked failed first. Nil when there is nothing to do.
    public func claim(worker: String, leaseSeconds: Double, maxAttempts: Int) throws -> ClaimedJob? {
        try db.with { s in
            try s.execute("""
                UPDATE framepipe_jobs SET state = 'failed', finished_at = now(), lease_until = NULL,
                    error = 'gave up after ' || attempts || ' attempt(s) whose worker stopped renewing its lease (last: '
                            || coalesce(worker, '?') || ')'
                WHERE state = 'running' AND lease_until < now() AND attempts >= \(maxAttempts)
                """)
            let rows = try s.query("""
                WITH next AS (
                    SELECT id FROM framepipe_jobs
                    WHERE (state = 'pending' AND not_before <= now())
                       OR (state = 'running' AND lease_until < now() AND attempts < \(maxAttempts))
                    ORDER BY id LIMIT 1
                    FOR UPDATE SKIP LOCKED)
                UPDATE framepipe_jobs j SET
                    error = CASE WHEN j.state = 'running'
                                 THEN 'lease of ' || coalesce(j.worker, '?') || ' expired at attempt ' || j.attempts
                                 ELSE j.error END,
                    state = 'running', worker = \(worker), attempts = j.attempts + 1, renewals = 0,
                    lease_until = now() + make_interval(secs => \(leaseSeconds)), started_at = now()
                FROM next WHERE j.id = next.id
                RETURNING j.id, j.input, j.attempts
                """)
            guard let row = rows.first else { return nil }
            let (id, input, attempt) = try row.decode((Int64, String, Int).self)
            return ClaimedJob(id: id, input: input, attempt: attempt)
        }
    }

    /// Extends the lease of `job` by `leaseSeconds` from now; false when the lease is no longer
    /// this worker's (it expired and another worker claimed the job, or the job ended).
    public func renew(_ job: ClaimedJob, worker: String, leaseSeconds: Double) throws -> Bool {
        try db.with { s in
            try s.execute("""
                UPDATE framepipe_jobs SET lease_until = now() + make_interval(secs => \(leaseSeconds)), renewals = renewals + 1
                WHERE id = \(job.id) AND worker = \(worker) AND attempts = \(job.attempt) AND state = 'running'
                """) == 1
        }
    }

    /// Commits `result`: its frame rows (multi-row INSERTs of `batchRows`) and the job's completion
    /// in one transaction, unless the job is done already.
    public func complete(_ result: PendingResult, batchRows: Int = 256) throws -> CompleteOutcome {
        try db.transaction { s in
            let changed = try s.execute("""
                UPDATE framepipe_jobs SET state = 'done', worker = \(result.worker), finished_at = now(), lease_until = NULL,
                    seconds = \(result.seconds), frames = \(result.rows.count), error = NULL
                WHERE id = \(result.job) AND state <> 'done'
                """)
            guard changed == 1 else { return .alreadyDone }
            try s.execute("DELETE FROM framepipe_frames WHERE job_id = \(result.job)")
            var start = 0
            while start < result.rows.count {
                let end = min(start + batchRows, result.rows.count)
                try s.execute(try Self.insert(job: result.job, rows: result.rows[start..<end]))
                start = end
            }
            return .committed
        }
    }

    static func insert(job: Int64, rows: ArraySlice<ResultRow>) throws -> PostgresQuery {
        var sql = "INSERT INTO framepipe_frames (job_id, frame, pts, keyframe, labels, embedding) VALUES "
        var binds = PostgresBindings(capacity: rows.count * 6)
        var n = 0
        for (i, r) in rows.enumerated() {
            if i > 0 { sql += "," }
            sql += "($\(n + 1),$\(n + 2),$\(n + 3),$\(n + 4),$\(n + 5)::jsonb,$\(n + 6)::real[])"
            n += 6
            binds.append(job)
            binds.append(r.frame)
            binds.append(r.pts)
            binds.append(r.keyframe)
            binds.append(r.labelsJSON)
            binds.append(r.embedding)
        }
        return PostgresQuery(unsafeSQL: sql, binds: binds)
    }

    /// Records that `job` failed with `error`: pending again after `retryDelay` seconds while it
    /// has attempts left, else failed. Returns the new state (nil: the lease was no longer ours).
    public func fail(_ job: ClaimedJob, worker: String, error: String, maxAttempts: Int, retryDelay: Double) throws -> String? {
        try db.with { s in
            let rows = try s.query("""
                UPDATE framepipe_jobs SET
                    state = CASE WHEN attempts >= \(maxAttempts) THEN 'failed' ELSE 'pending' END,
                    finished_at = CASE WHEN attempts >= \(maxAttempts) THEN now() ELSE NULL END,
                    error = \(error), lease_until = NULL,
                    not_before = now() + make_interval(secs => \(retryDelay))
                WHERE id = \(job.id) AND worker = \(worker) AND attempts = \(job.attempt) AND state = 'running'
                RETURNING state
                """)
            return try rows.first.map { try $0.decode(String.self) }
        }
    }

    /// Gives `job` back (a graceful stop interrupted it): pending at once, the claim not counted.
    public func release(_ job: ClaimedJob, worker: String) throws {
        _ = try db.with { s in
            try s.execute("""
                UPDATE framepipe_jobs SET state = 'pending', attempts = attempts - 1, lease_until = NULL, not_before = now()
                WHERE id = \(job.id) AND worker = \(worker) AND attempts = \(job.attempt) AND state = 'running'
                """)
        }
    }

    /// Jobs per state and per worker.
    public func status() throws -> QueueStatus {
        try db.with { s in
            var st = QueueStatus()
            for row in try s.query("SELECT state, count(*), coalesce(sum(frames), 0) FROM framepipe_jobs GROUP BY state") {
                let (state, n, frames) = try row.decode((String, Int, Int).self)
                st.states[state] = n
                if state == "done" { st.frames = frames }
            }
            for row in try s.query("SELECT worker, state, count(*) FROM framepipe_jobs WHERE worker IS NOT NULL GROUP BY 1, 2") {
                let (w, state, n) = try row.decode((String, String, Int).self)
                st.workers[w, default: [:]][state] = n
            }
            let expired = try s.query("SELECT count(*) FROM framepipe_jobs WHERE state = 'running' AND lease_until < now()")
            st.expiredLeases = try expired.first!.decode(Int.self)
            return st
        }
    }
}
