import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `framepipe serve` workers with a `[queue]` section, as separate processes against one real
/// PostgreSQL server: exactly-once processing with 3 workers, under repeated `kill -9`, and across
/// a database restart. Serialized: each test already loads both cores.
@Suite(.serialized) struct WorkerProcessTests {
    static var ready: Bool { PostgresCluster.available && FileManager.default.isExecutableFile(atPath: "/usr/bin/ffmpeg") }

    /// Runs `body` with a started cluster, a fleet folder and 30 enqueued clips; cleans up after
    /// (FRAMEPIPE_KEEP_QUEUE_TEST=1 leaves the folders in /tmp for inspection).
    func withQueue(jobs: Int = 30, frames: [Int], _ body: (PostgresCluster, WorkerFleet, [(path: String, frames: Int)]) throws -> Void) throws {
        let cluster = try PostgresCluster()
        try cluster.start()
        let fleet = try WorkerFleet(url: cluster.url)
        let keep = ProcessInfo.processInfo.environment["FRAMEPIPE_KEEP_QUEUE_TEST"] == "1"
        defer {
            fleet.destroy(keep: keep)
            if keep { cluster.stop(); print("queue test folders kept: \(fleet.root.path), \(cluster.root.path)") } else { cluster.destroy() }
        }
        let clips = try Clips.make(in: fleet.root, jobs: jobs, frames: frames)
        let r = try framepipe(["enqueue", "--db", cluster.url] + clips.map(\.path))
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.lines.count == jobs)
        #expect(r.lines.first == "1\t\(clips[0].path)")
        try body(cluster, fleet, clips)
    }

    /// Waits until no job is pending or running (or `timeout`); calls `during` on each poll.
    func waitDrained(_ cluster: PostgresCluster, timeout: Double, during: () throws -> Void = {}) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? cluster.psql("SELECT count(*) FROM framepipe_jobs WHERE state IN ('pending', 'running')")) == "0" { return true }
            try during()
            usleep(300_000)
        }
        return false
    }

    /// Every job done exactly once: state done, `frames` = the clip's frame count = its stored rows,
    /// frame numbers 0...n-1 (the primary key keeps them distinct), each row with labels and a
    /// 1280-float embedding; no job left running.
    func expectExactlyOnce(_ cluster: PostgresCluster, _ clips: [(path: String, frames: Int)]) throws {
        let rows = try cluster.psql("""
            SELECT j.input, j.state, coalesce(j.frames, -1), count(f.frame), coalesce(min(f.frame), -1), coalesce(max(f.frame), -1),
                   count(*) FILTER (WHERE array_length(f.embedding, 1) = 1280 AND jsonb_array_length(f.labels) = 3)
            FROM framepipe_jobs j LEFT JOIN framepipe_frames f ON f.job_id = j.id GROUP BY j.id ORDER BY j.id
            """).split(separator: "\n").map { $0.split(separator: "|").map(String.init) }
        #expect(rows.count == clips.count)
        for (row, clip) in zip(rows, clips) {
            let n = clip.frames
            #expect(row == [clip.path, "done", "\(n)", "\(n)", "0", "\(n - 1)", "\(n)"], "job for \(clip.path)")
        }
        #expect(try cluster.psql("SELECT count(*) FROM framepipe_frames") == "\(clips.reduce(0) { $0 + $1.frames })")
    }

    @Test(.enabled(if: ready)) func threeWorkersProcessThirtyJobsExactlyOnce() throws {
        try withQueue(frames: [10, 12, 14, 16, 20]) { cluster, fleet, clips in
            try fleet.configure(count: 3, lease: 6, maxAttempts: 3, metrics: true)  // no takeovers here: attempts stay 1
            try fleet.startAll()
            #expect(try waitDrained(cluster, timeout: 240), "not drained:\n\(fleet.logs())")
            try expectExactlyOnce(cluster, clips)
            #expect(try cluster.psql("SELECT count(*) FROM framepipe_jobs WHERE attempts <> 1") == "0")

            // The status command and each worker's metrics agree with the table.
            let jobs = try framepipe(["jobs", "--db", cluster.url, "--json"])
            #expect(jobs.status == 0)
            let o = try #require(try JSONSerialization.jsonObject(with: jobs.stdout) as? [String: Any])
            #expect(o["done"] as? Int == 30 && o["pending"] as? Int == 0 && o["running"] as? Int == 0 && o["failed"] as? Int == 0)
            #expect(o["frames"] as? Int == clips.reduce(0) { $0 + $1.frames })
            let perWorker = try #require(o["workers"] as? [String: [String: Int]])
            #expect(Set(perWorker.keys).isSubset(of: ["w1", "w2", "w3"]))
            #expect(perWorker.values.reduce(0) { $0 + ($1["done"] ?? 0) } == 30)
            let text = try framepipe(["jobs", "--db", cluster.url])
            #expect(text.stdoutText.contains("done    30 ("), "\(text.stdoutText)")
            usleep(2_500_000)  // one gauge refresh (every 2 s) after the last job
            for w in fleet.workers {
                let m = try shell("curl -sf http://127.0.0.1:\(w.metricsPort!)/metrics").stdoutText
                let done = perWorker[w.name]?["done"] ?? 0
                #expect(m.contains("framepipe_queue_depth{queue=\"db_pending\"} 0"), "\(w.name)")
                #expect(m.contains("framepipe_queue_database_up 1"), "\(w.name)")
                if done > 0 { #expect(m.contains("framepipe_jobs_total{result=\"done\"} \(done)\n"), "\(w.name): \(m)") }
                let renewals = Int(try cluster.psql("SELECT coalesce(sum(renewals), 0) FROM framepipe_jobs WHERE worker = '\(w.name)'")) ?? -1
                if renewals > 0 { #expect(m.contains("framepipe_lease_renewals_total \(renewals)\n"), "\(w.name)") }
            }
            #expect(fleet.stopAll() == [0, 0, 0])
            for w in fleet.workers { #expect(w.outboxFiles == [], "\(w.name)") }
        }
    }

    @Test(.enabled(if: ready)) func killNineLoopLosesAndDuplicatesNothing() throws {
        try withQueue(frames: [20, 16, 24]) { cluster, fleet, clips in
            try fleet.configure(count: 3, lease: 2, maxAttempts: 30)
            try fleet.startAll()
            var hits = 0
            for _ in 0..<10 {
                // Wait until one of our workers holds a job (restarted ones are loading the model),
                // then kill it a random moment into that job.
                var busy: [String] = []
                let deadline = Date().addingTimeInterval(30)
                while Date() < deadline {
                    busy = try cluster.psql("SELECT worker FROM framepipe_jobs WHERE state = 'running' AND lease_until > now()")
                        .split(separator: "\n").map(String.init)
                    if !busy.isEmpty { break }
                    usleep(50_000)
                }
                usleep(UInt32.random(in: 0...300_000))
                let candidates = fleet.workers.filter { busy.contains($0.name) }
                let victim = (candidates.isEmpty ? fleet.workers : candidates).randomElement()!
                if !candidates.isEmpty { hits += 1 }
                victim.kill9()
                try victim.start()
            }
            print("kill -9 loop: 10 kills, \(hits) while the worker held a job")
            #expect(hits >= 5)
            #expect(try waitDrained(cluster, timeout: 240), "not drained:\n\(fleet.logs())")
            try expectExactlyOnce(cluster, clips)
            #expect(fleet.workers.reduce(0) { $0 + $1.pids.count } == 13)
            #expect(try cluster.psql("SELECT count(*) FROM framepipe_jobs WHERE state = 'running' OR lease_until IS NOT NULL") == "0")
            #expect(fleet.stopAll() == [0, 0, 0])
            // A result sealed just before a kill was committed at the restart, or dropped as a duplicate.
            for w in fleet.workers { #expect(w.outboxFiles == [], "\(w.name)") }
        }
    }

    @Test(.enabled(if: ready)) func databaseRestartUnderLoadLosesNothing() throws {
        try withQueue(frames: [20, 16, 24]) { cluster, fleet, clips in
            try fleet.configure(count: 3, lease: 3, maxAttempts: 10)
            try fleet.startAll()
            for round in 0..<2 {
                let target = 5 + round * 8
                let deadline = Date().addingTimeInterval(120)
                while Date() < deadline, (Int((try? cluster.psql("SELECT count(*) FROM framepipe_jobs WHERE state = 'done'")) ?? "") ?? 0) < target {
                    usleep(100_000)
                }
                cluster.stop()
                usleep(1_500_000)
                try cluster.start()
            }
            #expect(try waitDrained(cluster, timeout: 240), "not drained:\n\(fleet.logs())")
            try expectExactlyOnce(cluster, clips)
            for w in fleet.workers { #expect(w.isRunning && w.pids.count == 1, "\(w.name) recovered by itself") }
            let logs = fleet.workers.map(\.log).joined()
            #expect(logs.contains("database unavailable, claiming paused"))
            #expect(logs.contains("database reachable again"))
            #expect(fleet.stopAll() == [0, 0, 0])
            for w in fleet.workers { #expect(w.outboxFiles == [], "\(w.name)") }
        }
    }
}
