import Foundation
import Logging
import Pipeline
import Testing
import TestSupport
@testable import Service

/// The daemon with a fake model: inbox handling, attempts, reload, streams, notify messages.
@Suite(.serialized) struct DaemonTests {
    struct Env {
        let root: URL
        var inbox: String { root.path + "/inbox" }
        var outbox: String { root.path + "/outbox" }
        var state: String { root.path + "/state" }
        var configPath: String { root.path + "/framepipe.toml" }
        init() throws { root = try TestEnv.tempDir("daemon") }
        func config(topK: Int = 2, streams: String = "", extra: String = "") -> String {
            """
            state_dir = "\(state)"
            inbox = "\(inbox)"
            outbox = "\(outbox)"
            max_attempts = 2
            drain_timeout = 5
            settle_time = 0.2
            retry_delay = 0.3
            \(extra)
            [model]
            batch = 4
            [output]
            emit = ["labels", "embedding"]
            top_k = \(topK)
            \(streams)
            """
        }
        func write(_ text: String) { writeFile(configPath, text) }
        func cleanup() { try? FileManager.default.removeItem(at: root) }
    }

    final class Loads: @unchecked Sendable {
        private let lock = NSLock()
        private var n = 0
        func inc() { lock.lock(); n += 1; lock.unlock() }
        var count: Int { lock.lock(); defer { lock.unlock() }; return n }
    }

    func makeDaemon(_ env: Env, notify: String? = nil, loads: Loads = Loads(), watchdog: Double = 2) throws -> Daemon {
        let config = try ServeConfig.load(path: env.configPath)
        return Daemon(config: config, configPath: env.configPath,
                      loader: { loads.inc(); return FakeEngine(model: $0) },
                      notifier: SDNotifier(socketPath: notify), log: Logger(label: "test"), watchdogInterval: watchdog)
    }

    @Test func watchdogPingsStopWhenThePipelineWedges() throws {
        let env = try Env()
        defer { env.cleanup() }
        env.write(env.config().replacingOccurrences(of: "drain_timeout = 5", with: "drain_timeout = 0.2"))
        let listener = try NotifyListener(path: env.root.path + "/notify.sock")
        let daemon = try makeDaemon(env, notify: listener.path, watchdog: 0.8)  // stall limit: 1 s
        try daemon.start()
        // Idle but alive: pings keep coming.
        #expect(listener.collect(for: 1.5).filter { $0 == "WATCHDOG=1" }.count >= 3)
        writeFile(env.inbox + "/hang.mp4", "HANG")
        usleep(2_000_000)  // the reader blocks: no frames, no loop turns
        _ = listener.collect(for: 0.1)
        let later = listener.collect(for: 1.5)
        #expect(!later.contains("WATCHDOG=1"), "\(later)")
        #expect(later.contains { $0.hasPrefix("STATUS=") })  // status still reported
        daemon.stop()
        #expect(FileManager.default.fileExists(atPath: env.inbox + "/hang.mp4"))  // left to redo
    }

    @Test func samplingSettingsReachEveryInputsPlan() throws {
        let env = try Env()
        defer { env.cleanup() }
        env.write(env.config(extra: "[sampling]\nevery = 3\nfps = 2.5\nkeyframes = true\nstart = 1\nend = 9\nio_timeout = 0\n"))
        try FileManager.default.createDirectory(atPath: env.inbox, withIntermediateDirectories: true)
        let config = try ServeConfig.load(path: env.configPath)
        let engine = Locked<FakeEngine?>(nil)
        let daemon = Daemon(config: config, configPath: env.configPath,
                            loader: { let e = FakeEngine(model: $0); engine.set(e); return e },
                            notifier: SDNotifier(socketPath: nil), log: Logger(label: "test"), watchdogInterval: 2)
        try daemon.start()
        writeFile(env.inbox + "/a.mp4", "FAKE 3")
        #expect(eventually { FileManager.default.fileExists(atPath: env.inbox + "/done/a.mp4") })
        daemon.stop()
        let got = try #require(engine.get()?.samplings[env.inbox + "/a.mp4"])
        #expect(got == config.sampling)
        #expect(got.every == 3 && got.fps == 2.5 && got.keyframes && got.start == 1 && got.end == 9)
        let source = got.sourceOptions(for: env.inbox + "/a.mp4", live: false)
        #expect(source.sampling.every == 3 && source.sampling.keyframesOnly && source.ioTimeout == nil && !source.lowDelay)
    }

    @Test func goodFileCompletesCorruptFileFailsWithReason() throws {
        let env = try Env()
        defer { env.cleanup() }
        env.write(env.config())
        try FileManager.default.createDirectory(atPath: env.inbox, withIntermediateDirectories: true)
        writeFile(env.inbox + "/early.mp4", "FAKE 10")  // present before start
        let listener = try NotifyListener(path: env.root.path + "/notify.sock")
        let daemon = try makeDaemon(env, notify: listener.path)
        try daemon.start()
        #expect(listener.waitFor("READY=1", timeout: 5).found)
        writeFile(env.inbox + "/good.mp4", "FAKE 9")
        writeFile(env.inbox + "/bad.mp4", "garbage")
        let fm = FileManager.default
        #expect(eventually { fm.fileExists(atPath: env.inbox + "/done/good.mp4") && fm.fileExists(atPath: env.inbox + "/failed/bad.mp4") && fm.fileExists(atPath: env.inbox + "/done/early.mp4") })
        // WATCHDOG=1 comes while the workers are alive.
        #expect(listener.waitFor("WATCHDOG=1", timeout: 5).found)
        daemon.stop()

        let lines = readLines(env.outbox + "/good.jsonl")
        #expect(lines.count == 9)
        let first = try #require(json(lines[0]))
        #expect(first["input"] as? String == "good.mp4")
        #expect((first["labels"] as? [[String: Any]])?.count == 2)
        #expect((first["labels"] as? [[String: Any]])?.first?["label"] as? String == "zero")
        #expect(fm.fileExists(atPath: env.outbox + "/good.npy"))
        #expect(fm.fileExists(atPath: env.outbox + "/good.csv"))
        #expect(readLines(env.outbox + "/early.jsonl").count == 10)
        let reason = try String(contentsOfFile: env.inbox + "/failed/bad.mp4.error", encoding: .utf8)
        #expect(reason.contains("bad.mp4: invalid data found when processing input"))
        #expect(reason.contains("(2 tries)"))  // retried once (retries = 1) before failed/
        #expect(!fm.fileExists(atPath: env.inbox + "/bad.mp4") && !fm.fileExists(atPath: env.inbox + "/good.mp4"))
        #expect(daemon.metrics.value("framepipe_inputs_total", ["result": "done"]) == 2)
        #expect(daemon.metrics.value("framepipe_inputs_total", ["result": "failed"]) == 1)
        #expect(daemon.metrics.value("framepipe_frames_emitted_total", ["source": "inbox"]) == 19)
        #expect(daemon.metrics.batches >= 6)  // 10 and 9 frames in batches of 4: 3 + 3
        // Nothing half-written is left anywhere.
        for d in [env.outbox, env.inbox, env.state] {
            #expect(try fm.contentsOfDirectory(atPath: d).allSatisfy { !$0.contains(".partial-") })
        }
        #expect(listener.waitFor("STOPPING=1", timeout: 5).found)
    }

    @Test func leftoversAreCleanedAndAFileThatKeepsCrashingGoesToFailed() throws {
        let env = try Env()
        defer { env.cleanup() }
        env.write(env.config())
        let fm = FileManager.default
        for d in [env.inbox, env.outbox, env.state] { try fm.createDirectory(atPath: d, withIntermediateDirectories: true) }
        // As a kill -9 leaves things: a temporary output, the input still in the inbox, attempts counted.
        writeFile(env.outbox + "/.crashy.jsonl.partial-999-1", "{\"frame\":0")
        writeFile(env.outbox + "/.redo.jsonl.partial-999-2", "{\"frame\":0")
        writeFile(env.inbox + "/crashy.mp4", "FAKE 5")
        writeFile(env.inbox + "/redo.mp4", "FAKE 6")
        var st = stat()
        stat(env.inbox + "/crashy.mp4", &st)
        let mtime = Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
        let record = AttemptsRecord(path: env.state + "/attempts.json")
        try record.begin("crashy.mp4", size: 6, mtime: mtime)
        try record.begin("crashy.mp4", size: 6, mtime: mtime)  // max_attempts = 2: give up
        stat(env.inbox + "/redo.mp4", &st)
        try record.begin("redo.mp4", size: 6, mtime: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)

        let daemon = try makeDaemon(env)
        try daemon.start()
        #expect(eventually { fm.fileExists(atPath: env.inbox + "/failed/crashy.mp4") && fm.fileExists(atPath: env.inbox + "/done/redo.mp4") })
        daemon.stop()
        let reason = try String(contentsOfFile: env.inbox + "/failed/crashy.mp4.error", encoding: .utf8)
        #expect(reason.contains("gave up after 2 attempt(s)"))
        #expect(readLines(env.outbox + "/redo.jsonl").count == 6)  // exactly one complete set
        #expect(try fm.contentsOfDirectory(atPath: env.outbox).sorted() == ["redo.csv", "redo.jsonl", "redo.manifest.json", "redo.npy"])
        #expect(AttemptsRecord(path: env.state + "/attempts.json").entry("redo.mp4", size: 6, mtime: 0) == nil)
    }

    @Test func stopDuringAFileLeavesItCompleteOrForTheNextStart() throws {
        let env = try Env()
        defer { env.cleanup() }
        env.write(env.config(extra: "").replacingOccurrences(of: "drain_timeout = 5", with: "drain_timeout = 0.2"))
        let daemon = try makeDaemon(env)
        try daemon.start()
        writeFile(env.inbox + "/long.mp4", "FAKE 2000 2000")  // 4 s of frames: longer than the drain time
        #expect(eventually { daemon.metrics.value("framepipe_frames_emitted_total", ["source": "inbox"]) > 8 })
        daemon.stop()
        let fm = FileManager.default
        #expect(fm.fileExists(atPath: env.inbox + "/long.mp4"))  // left to redo
        #expect(try fm.contentsOfDirectory(atPath: env.outbox).isEmpty)  // no partial set
        // The interrupted attempt is not held against the file.
        #expect(AttemptsRecord(path: env.state + "/attempts.json").entry("long.mp4", size: 14, mtime: 0) == nil)
        let record = try String(contentsOfFile: env.state + "/attempts.json", encoding: .utf8)
        #expect(record.contains("\"attempts\" : 0"))
    }

    @Test func reloadAppliesNewTopKToTheNextFileWithoutReloadingTheModel() throws {
        let env = try Env()
        defer { env.cleanup() }
        env.write(env.config(topK: 1))
        let loads = Loads()
        let daemon = try makeDaemon(env, loads: loads)
        try daemon.start()
        defer { daemon.stop() }
        let fm = FileManager.default
        writeFile(env.inbox + "/a.mp4", "FAKE 3")
        #expect(eventually { fm.fileExists(atPath: env.inbox + "/done/a.mp4") })
        env.write(env.config(topK: 3))
        daemon.reload()
        writeFile(env.inbox + "/b.mp4", "FAKE 3")
        #expect(eventually { fm.fileExists(atPath: env.inbox + "/done/b.mp4") })
        #expect((json(readLines(env.outbox + "/a.jsonl")[0])?["labels"] as? [Any])?.count == 1)
        #expect((json(readLines(env.outbox + "/b.jsonl")[0])?["labels"] as? [Any])?.count == 3)
        #expect(loads.count == 1)
        // A changed model is loaded again; a broken config is refused and the old one kept.
        env.write(env.config(topK: 3).replacingOccurrences(of: "batch = 4", with: "batch = 2"))
        daemon.reload()
        #expect(loads.count == 2)
        env.write("inbox = [")
        daemon.reload()
        writeFile(env.inbox + "/c.mp4", "FAKE 2")
        #expect(eventually { fm.fileExists(atPath: env.inbox + "/done/c.mp4") })
        #expect((json(readLines(env.outbox + "/c.jsonl")[0])?["labels"] as? [Any])?.count == 3)
    }

    @Test func streamReconnectsWithGapLinesAndBackoff() throws {
        let env = try Env()
        defer { env.cleanup() }
        // fake://12 delivers 12 frames then ends, like a camera that drops; each reconnect delivers again.
        env.write(env.config(streams: """
            [[streams]]
            name = "cam"
            url = "fake://12"
            reconnect_initial = 0.05
            reconnect_max = 0.2
            """).replacingOccurrences(of: "inbox = \"\(env.inbox)\"\noutbox = \"\(env.outbox)\"\n", with: "stream_dir = \"\(env.root.path)/streams\"\n"))
        let daemon = try makeDaemon(env)
        try daemon.start()
        let path = env.root.path + "/streams/cam.jsonl"
        #expect(eventually { readLines(path).filter { $0.contains("\"event\":\"gap\"") }.count >= 3 })
        daemon.stop()
        let lines = readLines(path).compactMap(json)
        #expect(lines.count == readLines(path).count)  // every line is complete JSON
        let events = lines.compactMap { $0["event"] as? String }
        #expect(events.prefix(4) == ["connected", "gap", "connected", "gap"])
        // Between a connect and its gap: the 12 frames in order.
        let firstGap = try #require(lines.firstIndex { $0["event"] as? String == "gap" })
        #expect(lines[1..<firstGap].compactMap { $0["frame"] as? Int } == Array(0..<12))
        #expect(lines[firstGap]["cause"] as? String == "ended")
        #expect(lines[firstGap]["reason"] as? String == "the sender ended the stream")
        #expect(lines[firstGap]["connection"] as? Int == 1)
        // Frame numbers continue across connections; the connected line says where from.
        let second = try #require(lines[(firstGap + 1)...].first { $0["event"] as? String == "connected" })
        #expect(second["first_frame"] as? Int == 12)
        #expect(second["connection"] as? Int == 2 && second["attempt"] as? Int == 1)
        #expect(lines[(firstGap + 2)...].first { $0["frame"] != nil }?["frame"] as? Int == 12)
        #expect(lines[firstGap]["frames"] as? Int == 12)
        #expect(daemon.metrics.value("framepipe_reconnects_total", ["source": "cam"]) >= 2)
    }
}

/// A value behind a lock, for closures that run on other threads.
final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func get() -> T { lock.lock(); defer { lock.unlock() }; return value }
    func set(_ v: T) { lock.lock(); value = v; lock.unlock() }
}
