import Foundation
import Logging
import Output
import Testing
import TestSupport
@testable import Queue

/// The queue's statements against a real PostgreSQL server (a throwaway cluster per test).
@Suite(.serialized) struct JobQueueTests {
    let log = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    /// Runs `body` with a started cluster and a migrated database; stops the cluster after.
    func withDatabase(_ body: (PostgresCluster, Database) throws -> Void) throws {
        let cluster = try PostgresCluster()
        defer { cluster.destroy() }
        try cluster.start()
        let db = Database(url: try DatabaseURL(cluster.url), log: log)
        defer { db.close() }
        #expect(try Schema.migrate(db) == 0)
        try body(cluster, db)
    }

    @Test(.enabled(if: PostgresCluster.available)) func migrationIsVersionedAndIdempotent() throws {
        try withDatabase { cluster, db in
            #expect(try Schema.migrate(db) == Schema.currentVersion)
            #expect(try cluster.psql("SELECT count(*) FROM framepipe_schema") == "1")
            // Several workers starting at once: the advisory lock lets exactly one migrate.
            try cluster.psql("DROP TABLE framepipe_frames, framepipe_jobs, framepipe_schema")
            let url = try DatabaseURL(cluster.url)
            let errors = Locked<[String]>([])
            DispatchQueue.concurrentPerform(iterations: 4) { _ in
                let d = Database(url: url, log: log)
                do { try Schema.migrate(d) } catch { errors.mutate { $0.append("\(error)") } }
                d.close()
            }
            #expect(errors.value == [])
            #expect(try cluster.psql("SELECT count(*) FROM framepipe_schema") == "1")
            // A newer schema than this binary knows is refused, naming both versions.
            try cluster.psql("INSERT INTO framepipe_schema (version) VALUES (\(Schema.currentVersion + 1))")
            #expect {
                try Schema.migrate(db)
            } throws: { "\($0)".contains("version \(Schema.currentVersion + 1), newer than this framepipe's \(Schema.currentVersion)") }
        }
    }

    @Test(.enabled(if: PostgresCluster.available)) func concurrentClaimsNeverShareAJob() throws {
        try withDatabase { cluster, db in
            let ids = try JobQueue(db: db).enqueue((0..<40).map { "/v/clip\($0).mp4" })
            #expect(ids.count == 40)
            let url = try DatabaseURL(cluster.url)
            let claimed = Locked<[Int64]>([])
            DispatchQueue.concurrentPerform(iterations: 4) { w in
                let q = JobQueue(db: Database(url: url, log: log))
                defer { q.db.close() }
                while let job = try? q.claim(worker: "w\(w)", leaseSeconds: 60, maxAttempts: 3) {
                    claimed.mutate { $0.append(job.id) }
                }
            }
            #expect(claimed.value.sorted() == ids)
            #expect(try cluster.psql("SELECT count(*) FROM framepipe_jobs WHERE state = 'running' AND attempts = 1") == "40")
        }
    }

    @Test(.enabled(if: PostgresCluster.available)) func expiredLeaseIsClaimedAgainAndStaleWorkerLosesIt() throws {
        try withDatabase { cluster, db in
            let q = JobQueue(db: db)
            _ = try q.enqueue(["/v/a.mp4"])
            let first = try #require(try q.claim(worker: "a", leaseSeconds: 1, maxAttempts: 3))
            #expect(try q.claim(worker: "b", leaseSeconds: 1, maxAttempts: 3) == nil)  // leased
            #expect(try q.renew(first, worker: "a", leaseSeconds: 1))
            #expect(try cluster.psql("SELECT renewals FROM framepipe_jobs") == "1")
            usleep(1_300_000)
            let second = try #require(try q.claim(worker: "b", leaseSeconds: 30, maxAttempts: 3))
            #expect(second.id == first.id && second.attempt == 2)
            #expect(try cluster.psql("SELECT error FROM framepipe_jobs") == "lease of a expired at attempt 1")
            #expect(try !q.renew(first, worker: "a", leaseSeconds: 30))  // no longer a's
            #expect(try q.fail(first, worker: "a", error: "late", maxAttempts: 3, retryDelay: 0) == nil)
            // The stale worker's result still wins if it commits first; the second is then dropped.
            let rows = [ResultRow(frame: 0, pts: 0, keyframe: true, labelsJSON: "[]", embedding: [1, 2])]
            #expect(try q.complete(PendingResult(job: first.id, attempt: 1, worker: "a", input: first.input, seconds: 1, rows: rows)) == .committed)
            #expect(try q.complete(PendingResult(job: first.id, attempt: 2, worker: "b", input: first.input, seconds: 1,
                                                 rows: rows + [ResultRow(frame: 1, pts: 0.1, keyframe: false, labelsJSON: nil, embedding: nil)])) == .alreadyDone)
            #expect(try cluster.psql("SELECT state || ' ' || worker || ' ' || frames FROM framepipe_jobs") == "done a 1")
            #expect(try cluster.psql("SELECT count(*) FROM framepipe_frames") == "1")
        }
    }

    @Test(.enabled(if: PostgresCluster.available)) func exhaustedLeasesAndFailedInputsEndFailed() throws {
        try withDatabase { cluster, db in
            let q = JobQueue(db: db)
            _ = try q.enqueue(["/v/crashy.mp4", "/v/bad.mp4"])
            // crashy: its worker dies twice (lease runs out); with max_attempts 2 it then fails.
            let c1 = try #require(try q.claim(worker: "a", leaseSeconds: 0.2, maxAttempts: 2))
            #expect(c1.input == "/v/crashy.mp4")
            usleep(300_000)
            let c2 = try #require(try q.claim(worker: "b", leaseSeconds: 0.2, maxAttempts: 2))
            #expect(c2.id == c1.id && c2.attempt == 2)
            usleep(300_000)
            // bad: an input error is retried after retry_delay, then fails with the error.
            let b1 = try #require(try q.claim(worker: "a", leaseSeconds: 30, maxAttempts: 2))
            #expect(b1.input == "/v/bad.mp4")
            #expect(try cluster.psql("SELECT state || ': ' || error FROM framepipe_jobs WHERE id = \(c1.id)")
                    == "failed: gave up after 2 attempt(s) whose worker stopped renewing its lease (last: b)")
            #expect(try q.fail(b1, worker: "a", error: "open input: Invalid data", maxAttempts: 2, retryDelay: 0.3) == "pending")
            #expect(try q.claim(worker: "a", leaseSeconds: 30, maxAttempts: 2) == nil)  // retry delay
            usleep(400_000)
            let b2 = try #require(try q.claim(worker: "a", leaseSeconds: 30, maxAttempts: 2))
            #expect(try q.fail(b2, worker: "a", error: "open input: Invalid data", maxAttempts: 2, retryDelay: 0) == "failed")
            let st = try q.status()
            #expect(st.count("failed") == 2 && st.count("pending") == 0 && st.count("running") == 0)
            #expect(st.workers["a"]?["failed"] == 1 && st.workers["b"]?["failed"] == 1)
        }
    }

    @Test(.enabled(if: PostgresCluster.available)) func gracefulReleaseDoesNotCountTheAttempt() throws {
        try withDatabase { _, db in
            let q = JobQueue(db: db)
            _ = try q.enqueue(["/v/a.mp4"])
            let j = try #require(try q.claim(worker: "a", leaseSeconds: 30, maxAttempts: 1))
            try q.release(j, worker: "a")
            let again = try #require(try q.claim(worker: "b", leaseSeconds: 30, maxAttempts: 1))
            #expect(again.attempt == 1)
        }
    }

    /// Rows go through the sink into the outbox file, survive a database outage there, and reach
    /// the tables exactly as written (labels jsonb, embedding float32 bit for bit) once it is back.
    @Test(.enabled(if: PostgresCluster.available)) func sinkKeepsResultThroughOutageThenCommits() throws {
        try withDatabase { cluster, db in
            let q = JobQueue(db: db)
            _ = try q.enqueue(["/v/a.mp4"])
            let job = try #require(try q.claim(worker: "w", leaseSeconds: 30, maxAttempts: 3))
            let dir = try TestEnv.tempDir("queue-outbox")
            defer { try? FileManager.default.removeItem(at: dir) }
            let outbox = try ResultOutbox(directory: dir.path)
            let committer = ResultCommitter(queue: q, outbox: outbox)
            let embedding: [Float] = [0.1, -2.5e-8, .greatestFiniteMagnitude, 3]
            cluster.stop()  // the database goes away before the job finishes
            var sealedPath: String?
            let sink = try ResultsSink(job: job, worker: "w", outbox: outbox, emit: EmitOptions(labels: true, embedding: true)) { sealedPath = $0 }
            for i in 0..<300 {
                try embedding.withUnsafeBufferPointer { e in
                    try sink.write(FrameRecord(input: job.input, frame: i * 2, pts: Double(i) * 0.08, keyframe: i == 0,
                                               labels: [LabelScore(index: 7, label: "tab\there \"q\"", score: 0.5)], embedding: e))
                }
            }
            try sink.finish(error: nil)
            let path = try #require(sealedPath)
            #expect(outbox.sealed() == [path])
            #expect {
                try committer.commit(path)
            } throws: { ($0 as? QueueError)?.isConnection == true }
            #expect(outbox.sealed() == [path])  // kept

            try cluster.start()
            #expect(try committer.commit(path) == .committed(job: job.id, frames: 300))
            #expect(outbox.sealed() == [])
            #expect(try cluster.psql("SELECT state || ' ' || frames FROM framepipe_jobs") == "done 300")
            #expect(try cluster.psql("SELECT count(*) || ' ' || min(frame) || ' ' || max(frame) FROM framepipe_frames") == "300 0 598")
            #expect(try cluster.psql("SELECT labels->0->>'label' FROM framepipe_frames WHERE frame = 2") == "tab\there \"q\"")
            let bits = try cluster.psql("SELECT float4send(embedding[3])::text FROM framepipe_frames WHERE frame = 4")
            #expect(bits == "\\x7f7fffff")
            #expect(try cluster.psql("SELECT embedding[2] = -2.5e-8::real FROM framepipe_frames WHERE frame = 4") == "t")
            #expect(try cluster.psql("SELECT count(*) FROM framepipe_frames WHERE keyframe") == "1")
        }
    }

    @Test func failedOrAbandonedInputSealsNothing() throws {
        let dir = try TestEnv.tempDir("queue-outbox")
        defer { try? FileManager.default.removeItem(at: dir) }
        let outbox = try ResultOutbox(directory: dir.path)
        let job = ClaimedJob(id: 9, input: "/v/x.mp4", attempt: 1)
        for abandon in [false, true] {
            var sealed = false
            let sink = try ResultsSink(job: job, worker: "w", outbox: outbox, emit: EmitOptions()) { _ in sealed = true }
            try sink.write(FrameRecord(input: job.input, frame: 0, pts: 0, keyframe: true, labels: [], embedding: nil))
            if abandon { sink.abandon() } else { try sink.finish(error: "decode failed") }
            #expect(!sealed)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == [])
        // A truncated or foreign file in the outbox is reported (and moved aside by the committer), never half-committed.
        try "{\"v\":1,\"job\":3,\"attempt\":1,\"worker\":\"w\",\"input\":\"x\"}\n0\t0\t1\t\t[]\n".write(toFile: dir.path + "/job-3-a1.rows", atomically: true, encoding: .utf8)
        #expect {
            try ResultOutbox.read(dir.path + "/job-3-a1.rows")
        } throws: { "\($0)".contains("not a complete outbox file: no end line") }
    }
}

/// A value behind a lock, for results gathered by concurrent test threads.
final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: T
    init(_ v: T) { self.v = v }
    var value: T { lock.lock(); defer { lock.unlock() }; return v }
    func mutate(_ f: (inout T) -> Void) { lock.lock(); f(&v); lock.unlock() }
}
