import Foundation
import Logging
import Testing
import TestSupport
@testable import Service

@Suite struct NotifierTests {
    @Test func sendsDatagramsToAPathSocket() throws {
        let dir = try TestEnv.tempDir("notify")
        defer { try? FileManager.default.removeItem(at: dir) }
        let listener = try NotifyListener(path: dir.path + "/notify.sock")
        let n = SDNotifier(environment: ["NOTIFY_SOCKET": listener.path])
        #expect(n.isEnabled)
        n.ready(status: "warming done")
        #expect(listener.receive(timeout: 2) == "READY=1\nSTATUS=warming done")
        n.watchdog()
        #expect(listener.receive(timeout: 2) == "WATCHDOG=1")
    }

    @Test func abstractNamespaceSocket() throws {
        let name = "@framepipe-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let listener = try NotifyListener(path: name)
        let n = SDNotifier(socketPath: name)
        n.stopping()
        #expect(listener.receive(timeout: 2)?.hasPrefix("STOPPING=1") == true)
    }

    @Test func unsetSocketDoesNothing() {
        let n = SDNotifier(environment: [:])
        #expect(!n.isEnabled)
        #expect(!n.notify("READY=1"))
        #expect(!SDNotifier(socketPath: "relative/path").isEnabled)
    }

    @Test func watchdogIntervalHonoursPid() {
        #expect(SDNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "30000000"]) == 30)
        #expect(SDNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(getpid())"]) == 30)
        #expect(SDNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"]) == nil)
        #expect(SDNotifier.watchdogInterval(environment: [:]) == nil)
    }
}

@Suite struct JournalLogTests {
    @Test func priorityPrefixAndSortedMetadata() {
        let line = JournalLogHandler.format(level: .error, message: "failed bad.mp4",
                                            metadata: ["input.path": "/in/bad.mp4", "attempt": "2", "reason": "two words"])
        #expect(line == "<3>failed bad.mp4 attempt=2 input.path=/in/bad.mp4 reason=\"two words\"")
        #expect(JournalLogHandler.priority(.info) == 6)
        #expect(JournalLogHandler.priority(.warning) == 4)
    }

    @Test func everyFieldIsEscapedSoNothingStartsALineOfItsOwn() {
        let evil = "evil\n<0>FORGED line.mp4"
        let line = JournalLogHandler.format(level: .info, message: "done \(evil)\r\n<1>again",
                                            metadata: ["input.path": "/in/\(evil)", "x": "tab\there\u{1b}[31m\u{7f}\u{85}\u{2028}\\", "q": "say \"hi\""])
        #expect(!line.contains("\n") && !line.contains("\r"))
        #expect(line.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value != 0x7f && !(0x80..<0xa0).contains($0.value) && $0.value != 0x2028 })
        #expect(line == #"<6>done evil\n<0>FORGED line.mp4\r\n<1>again input.path="/in/evil\n<0>FORGED line.mp4" q="say \"hi\"" x=tab\there\x1b[31m\x7f\u{85}\u{2028}\\"#)
        #expect(JournalLogHandler.escape("plain é ü 日本") == "plain é ü 日本")
    }
}

@Suite struct StreamLogTests {
    @Test func rotatesBySizeAndKeepsTheNewestFiles() throws {
        let dir = try TestEnv.tempDir("streamlog")
        defer { try? FileManager.default.removeItem(at: dir) }
        let log = try StreamLog(directory: dir.path, name: "cam", rotateBytes: 4096, keepFiles: 2)
        let line = Array((String(repeating: "x", count: 99) + "\n").utf8)  // 100 bytes
        for _ in 0..<200 { try log.append(line) }  // 20000 bytes: ~4 files of 4000
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(names == ["cam.1.jsonl", "cam.2.jsonl", "cam.jsonl"])
        for n in names {
            let size = (try FileManager.default.attributesOfItem(atPath: dir.path + "/" + n)[.size] as? Int) ?? 0
            #expect(size <= 4096 && size % 100 == 0, "\(n): \(size)")
        }
        let total = names.reduce(0) { $0 + readLines(dir.path + "/" + $1).count }
        #expect(total < 200)  // the oldest were removed
    }

    @Test func aLineCutByACrashIsTrimmedOnReopen() throws {
        let dir = try TestEnv.tempDir("streamlog")
        defer { try? FileManager.default.removeItem(at: dir) }
        writeFile(dir.path + "/cam.jsonl", "{\"frame\":0}\n{\"frame\":1}\n{\"fra")
        let log = try StreamLog(directory: dir.path, name: "cam", rotateBytes: 1 << 20, keepFiles: 1)
        try log.append(StreamLog.gapLine(stream: "cam", input: "udp://x", cause: "ended", reason: "end of stream", time: 1,
                                         lastPts: 0.04, frames: 2, connection: 1, retryIn: 0.5))
        let lines = readLines(dir.path + "/cam.jsonl")
        #expect(lines.count == 3)
        #expect(lines.allSatisfy { json($0) != nil })
        let gap = json(lines[2])
        #expect(gap?["event"] as? String == "gap")
        #expect(gap?["reason"] as? String == "end of stream")
        #expect(gap?["retry_in"] as? Double == 0.5)
    }

    @Test func backoffDoublesUpToTheCap() {
        let delays = (1...8).map { StreamWorker.backoff(failures: $0, initial: 0.5, cap: 10) }
        #expect(delays == [0.5, 1, 2, 4, 8, 10, 10, 10])
        #expect(StreamWorker.effectiveURL("udp://127.0.0.1:5000", stallTimeout: 2) == "udp://127.0.0.1:5000?timeout=2000000")
        #expect(StreamWorker.effectiveURL("udp://h:1?timeout=5", stallTimeout: 2) == "udp://h:1?timeout=5")
        #expect(StreamWorker.effectiveURL("rtsp://h/x", stallTimeout: 2) == "rtsp://h/x")
    }
}

@Suite struct MetricsTests {
    @Test func rendersPrometheusText() {
        let m = Metrics()
        m.add("framepipe_frames_emitted_total", ["source": "inbox"], by: 120)
        m.add("framepipe_errors_total", ["source": "cam", "kind": "reconnect"])
        m.set("framepipe_queue_depth", ["queue": "inbox"], 2)
        m.observeBatch(seconds: 0.03)
        m.observeBatch(seconds: 0.2)
        let text = m.render()
        #expect(text.contains("# TYPE framepipe_frames_emitted_total counter\n"))
        #expect(text.contains("framepipe_frames_emitted_total{source=\"inbox\"} 120\n"))
        #expect(text.contains("framepipe_errors_total{kind=\"reconnect\",source=\"cam\"} 1\n"))
        #expect(text.contains("framepipe_queue_depth{queue=\"inbox\"} 2\n"))
        #expect(text.contains("framepipe_batch_latency_seconds_bucket{le=\"0.025\"} 0\n"))
        #expect(text.contains("framepipe_batch_latency_seconds_bucket{le=\"0.05\"} 1\n"))
        #expect(text.contains("framepipe_batch_latency_seconds_bucket{le=\"+Inf\"} 2\n"))
        #expect(text.contains("framepipe_batch_latency_seconds_count 2\n"))
        #expect(m.total("framepipe_frames_emitted_total") == 120)
    }

    @Test func servesGetMetricsOverLoopback() throws {
        let m = Metrics()
        m.add("framepipe_frames_decoded_total", ["source": "inbox"], by: 7)
        let server = MetricsServer(metrics: m, log: Logger(label: "test"))
        try server.start(host: "127.0.0.1", port: 0)
        defer { server.stop() }
        let ok = try shell("exec 3<>/dev/tcp/127.0.0.1/\(server.port); printf 'GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&3; timeout 5 cat <&3", timeout: 20)
        #expect(ok.stdoutText.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(ok.stdoutText.contains("Content-Type: text/plain; version=0.0.4"))
        #expect(ok.stdoutText.contains("framepipe_frames_decoded_total{source=\"inbox\"} 7\n"))
        let missing = try shell("exec 3<>/dev/tcp/127.0.0.1/\(server.port); printf 'GET / HTTP/1.1\\r\\n\\r\\n' >&3; timeout 5 cat <&3", timeout: 20)
        #expect(missing.stdoutText.hasPrefix("HTTP/1.1 404"))
        let post = try shell("exec 3<>/dev/tcp/127.0.0.1/\(server.port); printf 'POST /metrics HTTP/1.1\\r\\n\\r\\n' >&3; timeout 5 cat <&3", timeout: 20)
        #expect(post.stdoutText.hasPrefix("HTTP/1.1 405"))
    }
}

@Suite struct InboxTests {
    final class Names: @unchecked Sendable {
        private let lock = NSLock()
        private var list: [String] = []
        func add(_ n: String) { lock.lock(); list.append(n); lock.unlock() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return list }
    }

    @Test func watcherReportsOnlyCompleteFiles() throws {
        let dir = try TestEnv.tempDir("inbox")
        defer { try? FileManager.default.removeItem(at: dir) }
        let names = Names()
        let w = InboxWatcher(directory: dir.path) { name, _ in names.add(name) }
        try w.start()
        defer { w.stop() }
        // A file held open for writing is not reported until it is closed.
        let fd = open(dir.path + "/slow.mp4", O_WRONLY | O_CREAT, 0o644)
        #expect(fd >= 0)
        _ = write(fd, "half", 4)
        usleep(300_000)
        #expect(names.all.isEmpty)
        _ = write(fd, "rest", 4)
        close(fd)
        #expect(eventually(timeout: 2) { names.all == ["slow.mp4"] })
        // Moved in: reported; hidden temporaries: never.
        writeFile(dir.path + "/../moved-\(dir.lastPathComponent).mp4", "x")
        #expect(rename(dir.path + "/../moved-\(dir.lastPathComponent).mp4", dir.path + "/moved.mp4") == 0)
        writeFile(dir.path + "/.upload.partial-1-1", "x")
        #expect(eventually(timeout: 2) { names.all.contains("moved.mp4") })
        usleep(200_000)
        #expect(!names.all.contains { $0.hasPrefix(".") })
    }

    @Test func queueHandsOutEachNameOnceInOrder() {
        let q = Inbox(directory: "/x", doneDir: "/x/done", failedDir: "/x/failed")
        q.enqueue("a", atomic: true); q.enqueue("b", atomic: true); q.enqueue("a", atomic: true)
        #expect(q.depth == 2)
        #expect(q.next(timeout: 0.1) == "a")
        #expect(q.next(timeout: 0.1) == "b")
        #expect(q.next(timeout: 0.05) == nil)
        q.close()
        q.enqueue("c", atomic: true)
        #expect(q.next(timeout: 0.05) == nil)
    }

    @Test func aFileWrittenInPlaceIsHandedOutOnlyOnceItStopsChanging() throws {
        let dir = try TestEnv.tempDir("settle")
        defer { try? FileManager.default.removeItem(at: dir) }
        let q = Inbox(directory: dir.path, doneDir: dir.path + "/done", failedDir: dir.path + "/failed")
        q.settleSeconds = 0.6
        let path = dir.path + "/chunks.mp4"
        writeFile(path, "a")
        q.enqueue("chunks.mp4")
        // One close per chunk, every 0.3 s: each resets the wait.
        for i in 0..<4 {
            #expect(q.next(timeout: 0.3) == nil, "handed out while still growing (chunk \(i))")
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            h.seekToEndOfFile(); h.write(Data("more".utf8)); try h.close()
            q.enqueue("chunks.mp4")
        }
        #expect(q.settlingCount == 1 && q.depth == 0)
        #expect(q.next(timeout: 3) == "chunks.mp4")
        // A retry waits its delay even for an unchanged file; a deleted file is dropped.
        q.enqueue("chunks.mp4", delay: 0.8)
        #expect(q.next(timeout: 0.5) == nil)
        #expect(q.next(timeout: 2) == "chunks.mp4")
        q.enqueue("chunks.mp4")
        try FileManager.default.removeItem(atPath: path)
        #expect(q.next(timeout: 1.2) == nil)
        #expect(q.settlingCount == 0)
    }

    @Test func freeNamesNeverReplaceAnEarlierFile() throws {
        let dir = try TestEnv.tempDir("names")
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(Inbox.freeName("a.mp4", in: dir.path) == "a.mp4")
        writeFile(dir.path + "/a.mp4", "x")
        #expect(Inbox.freeName("a.mp4", in: dir.path) == "a-2.mp4")
        writeFile(dir.path + "/a-2.mp4.error", "x")
        #expect(Inbox.freeName("a.mp4", in: dir.path, extraSuffixes: [".error"]) == "a-3.mp4")
        writeFile(dir.path + "/noext", "x")
        #expect(Inbox.freeName("noext", in: dir.path) == "noext-2")
        writeFile(dir.path + "/a.jsonl", "x")
        #expect(SetManifest.freeStem(for: "a.mkv", outbox: dir.path, claimed: []) == "a-2")
        #expect(SetManifest.freeStem(for: "b.mkv", outbox: dir.path, claimed: ["b"]) == "b-2")
    }

    @Test func sha256MatchesSha256sum() throws {
        let dir = try TestEnv.tempDir("sha")
        defer { try? FileManager.default.removeItem(at: dir) }
        // Lengths around the 55/56/64-byte padding edges and a multi-chunk file.
        for n in [0, 1, 55, 56, 63, 64, 65, 1000, 3 << 20 | 7] {
            let path = dir.path + "/f\(n)"
            var g = SystemRandomNumberGenerator()
            try Data((0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }).write(to: URL(fileURLWithPath: path))
            let r = try shell("sha256sum '\(path)'", timeout: 30)
            let expected = String(r.stdoutText.prefix(64))
            #expect(try SHA256.file(path) == expected, "length \(n)")
        }
    }

    @Test func attemptsSurviveReopenAndResetForANewFile() throws {
        let dir = try TestEnv.tempDir("attempts")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.path + "/attempts.json"
        let a = AttemptsRecord(path: path)
        #expect(try a.begin("clip.mp4", size: 10, mtime: 1) == 1)
        #expect(try a.begin("clip.mp4", size: 10, mtime: 1) == 2)
        try a.noteError("clip.mp4", "boom")
        let b = AttemptsRecord(path: path)
        #expect(b.entry("clip.mp4", size: 10, mtime: 1)?.attempts == 2)
        #expect(b.entry("clip.mp4", size: 10, mtime: 1)?.lastError == "boom")
        #expect(b.entry("clip.mp4", size: 11, mtime: 1) == nil)  // replaced by another file
        #expect(try b.begin("clip.mp4", size: 11, mtime: 1) == 1)
        try b.clear("clip.mp4")
        #expect(AttemptsRecord(path: path).entry("clip.mp4", size: 11, mtime: 1) == nil)
        writeFile(path, "not json")
        #expect(AttemptsRecord(path: path).warning != nil)
        // No temporaries left beside it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["attempts.json"])
    }
}

@Suite struct NotifierBackpressureTests {
    @Test func aFullReceiverNeverBlocksTheSender() throws {
        let dir = try TestEnv.tempDir("notify")
        defer { try? FileManager.default.removeItem(at: dir) }
        let listener = try NotifyListener(path: dir.path + "/notify.sock")  // never read until the end
        let n = SDNotifier(socketPath: listener.path)
        var delivered = 0
        for _ in 0..<1000 where n.notify("STATUS=busy") { delivered += 1 }  // would hang if sends blocked
        #expect(delivered > 0 && delivered < 1000)
        #expect(listener.receive(timeout: 1) == "STATUS=busy")
    }
}
