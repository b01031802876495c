import Foundation
import Testing
import TestSupport

/// `framepipe enqueue`, `framepipe jobs` and the `[queue]` config section, run as a user would.
@Suite(.serialized) struct QueueCommandTests {
    @Test(.enabled(if: PostgresCluster.available)) func enqueueAndJobs() throws {
        let cluster = try PostgresCluster()
        defer { cluster.destroy() }
        try cluster.start()
        let dir = try TestEnv.tempDir("queue-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        let clip = dir.path + "/a.mp4"
        FileManager.default.createFile(atPath: clip, contents: Data([0]))
        // Relative paths become absolute; a missing one is reported and skipped, the rest queued.
        let r = try runProcess(TestEnv.framepipe, ["enqueue", "--db", cluster.socketURL, "a.mp4", "missing.mp4", "rtsp://cam.local/s"],
                               currentDirectory: dir.path)
        #expect(r.status == 1)
        #expect(r.stdoutText == "1\t\(clip)\n2\trtsp://cam.local/s\n")
        #expect(r.stderrText == "framepipe: missing.mp4: no such file; not queued\n")
        let folder = try framepipe(["enqueue", "--db", cluster.url, dir.path])
        #expect(folder.status == 1 && folder.stderrText.contains("is a folder, not a video"))

        let jobs = try framepipe(["jobs"], environment: ["FRAMEPIPE_DB": cluster.url])
        #expect(jobs.status == 0)
        #expect(jobs.stdoutText.hasPrefix("\(cluster.url)\npending 2\nrunning 0\ndone    0 (0 frames)\nfailed  0\n"), "\(jobs.stdoutText)")
        #expect(try cluster.psql("SELECT version FROM framepipe_schema") == "1")

        // --check-config reaches the database and reads its schema version; a server that is down
        // is a failed check (exit 78) naming the URL.
        let model = TestEnv.packageRoot.appendingPathComponent("models/mobilenet_v2_1.0_224_quant.tflite").path
        let config = dir.path + "/w.toml"
        func write(_ url: String) throws {
            try "state_dir = \"\(dir.path)\"\n[model]\npath = \"\(model)\"\n[queue]\nurl = \"\(url)\"\nworker_id = \"cw\"\n"
                .write(toFile: config, atomically: true, encoding: .utf8)
        }
        try write(cluster.url)
        let ok = try framepipe(["serve", "--config", config, "--check-config"])
        #expect(ok.status == 0, "\(ok.stderrText)")
        #expect(ok.stdoutText.contains("queue: \(cluster.url): reachable as worker cw; schema version 1\n"), "\(ok.stdoutText)")
        try write("postgres://framepipe@127.0.0.1:\(try PostgresCluster.freePort())/postgres")
        let down = try framepipe(["serve", "--config", config, "--check-config"])
        #expect(down.status == 78 && down.stderrText.contains("cannot connect"), "\(down.stderrText)")
    }

    @Test func usageAndConnectionErrors() throws {
        let none = try framepipe(["jobs"], environment: ["FRAMEPIPE_DB": ""])
        #expect(none.status == 2 && none.stderrText.contains("--db URL is required"))
        let bad = try framepipe(["enqueue", "--db", "mysql://x@y/z", "a.mp4"])
        #expect(bad.status == 2 && bad.stderrText.contains("--db: database URL mysql://x@y/z: must start with postgres://"))
        let stdin = try framepipe(["enqueue", "--db", "postgres://x@y/z", "-"])
        #expect(stdin.status == 2 && stdin.stderrText.contains("stdin ('-') cannot be queued"))
        // Nobody listens on the port: exit 78, the URL (password hidden) and the reason named.
        let port = try PostgresCluster.freePort()
        let down = try framepipe(["jobs", "--db", "postgres://fp:pw@127.0.0.1:\(port)/q"])
        #expect(down.status == 78)
        #expect(down.stderrText.hasPrefix("framepipe: error: postgres://fp:***@127.0.0.1:\(port)/q: cannot connect: "), "\(down.stderrText)")
        #expect(!down.stderrText.contains("pw@"))
    }

    @Test func serveRejectsABadQueueSection() throws {
        let dir = try TestEnv.tempDir("queue-config")
        defer { try? FileManager.default.removeItem(at: dir) }
        for (body, message) in [
            ("url = \"postgres://fp@db/q\"\nlease_seconds = 0", "`queue.lease_seconds` must be at least 1"),
            ("url = \"postgres://fp@db/q?sslmode=require\"", "`queue.url`: database URL postgres://fp@db/q?sslmode=require: sslmode=require is not supported"),
            ("url = \"postgres://fp@db/q\"\nleas_seconds = 3", "unknown key(s): queue.leas_seconds"),
            ("worker_id = \"a\"", "queue.url"),
        ] {
            let path = dir.path + "/c.toml"
            try "state_dir = \"\(dir.path)\"\n[queue]\n\(body)\n".write(toFile: path, atomically: true, encoding: .utf8)
            let r = try framepipe(["serve", "--config", path])
            #expect(r.status == 78, "\(body)")
            #expect(r.stderrText.contains(message), "\(body): \(r.stderrText)")
        }
    }
}
