import Foundation
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `framepipe serve` processes with a `[queue]` section against one test cluster, each with its own
/// state folder (and so its own local outbox). Started and stopped by their PIDs only.
final class WorkerFleet {
    let root: URL
    let url: String
    private(set) var workers: [Worker] = []

    final class Worker {
        let name: String
        let stateDir: String
        let configPath: String
        let logPath: String
        var metricsPort: Int?
        private(set) var process: Process?
        /// Every PID this worker ran as (one per start).
        private(set) var pids: [Int32] = []

        init(name: String, root: URL) {
            self.name = name
            stateDir = root.path + "/" + name
            configPath = root.path + "/" + name + ".toml"
            logPath = root.path + "/" + name + ".log"
        }

        var isRunning: Bool { process?.isRunning ?? false }
        var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
        var outboxFiles: [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: stateDir + "/queue-outbox")) ?? []).filter { $0.hasSuffix(".rows") }
        }

        func start() throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: TestEnv.framepipe)
            p.arguments = ["serve", "--config", configPath]
            var env = ProcessInfo.processInfo.environment
            env.removeValue(forKey: "NOTIFY_SOCKET")
            env.removeValue(forKey: "WATCHDOG_USEC")
            p.environment = env
            if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            h.seekToEndOfFile()
            p.standardOutput = h
            p.standardError = h
            p.standardInput = FileHandle.nullDevice
            try p.run()
            process = p
            pids.append(p.processIdentifier)
        }

        /// SIGKILL to this worker's own PID; waits until it is gone.
        func kill9() {
            guard let p = process, p.isRunning else { return }
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }

        /// SIGTERM (graceful drain); returns the exit status, or nil if it had to be killed after `timeout`.
        @discardableResult
        func terminate(timeout: Double = 30) -> Int32? {
            guard let p = process, p.isRunning else { return process?.terminationStatus }
            kill(p.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(timeout)
            while p.isRunning && Date() < deadline { usleep(50_000) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit(); return nil }
            return p.terminationStatus
        }
    }

    init(url: String) throws {
        root = try TestEnv.tempDir("queue-fleet")
        self.url = url
    }

    /// Writes the configs of `count` workers (w1...wN): the shipped default model, one thread each.
    func configure(count: Int, lease: Double, maxAttempts: Int, metrics: Bool = false) throws {
        let model = TestEnv.packageRoot.appendingPathComponent("models/mobilenet_v2_1.0_224_quant.tflite").path
        for i in 1...count {
            let w = Worker(name: "w\(i)", root: root)
            if metrics { w.metricsPort = try PostgresCluster.freePort() }
            let text = """
                state_dir = "\(w.stateDir)"
                log_level = "info"
                drain_timeout = 10
                \(w.metricsPort.map { "metrics_listen = \"127.0.0.1:\($0)\"" } ?? "")
                [model]
                path = "\(model)"
                batch = 8
                threads = 1
                [output]
                emit = ["labels", "embedding"]
                top_k = 3
                [queue]
                url = "\(url)"
                worker_id = "\(w.name)"
                lease_seconds = \(lease)
                max_attempts = \(maxAttempts)
                retry_delay = 0
                poll_interval = 0.2

                """
            try text.write(toFile: w.configPath, atomically: true, encoding: .utf8)
            workers.append(w)
        }
    }

    func startAll() throws { for w in workers { try w.start() } }

    /// Stops every worker gracefully; returns their exit statuses (nil: had to be killed).
    func stopAll() -> [Int32?] { workers.map { $0.terminate() } }

    /// Kills whatever is still running (cleanup after a failed expectation) and removes the folder
    /// unless `keep` (left for inspection).
    func destroy(keep: Bool) {
        for w in workers where w.isRunning { w.kill9() }
        if !keep { try? FileManager.default.removeItem(at: root) }
    }

    /// The last lines of each worker's log (for failure messages).
    func logs() -> String {
        workers.map { "--- \($0.name)\n" + $0.log.split(separator: "\n").suffix(15).joined(separator: "\n") }.joined(separator: "\n")
    }
}

/// Short generated clips (lavfi testsrc, 64x48, 10 fps) and the number of frames each has.
enum Clips {
    /// Makes `jobs` input files in `dir`, cycling through clips of the given frame counts.
    static func make(in dir: URL, jobs: Int, frames: [Int]) throws -> [(path: String, frames: Int)] {
        var made: [(String, Int)] = []
        for n in frames {
            let path = dir.path + "/src-\(n).mp4"
            let r = try runProcess("/usr/bin/ffmpeg", ["-v", "error", "-y", "-f", "lavfi", "-i",
                                                       "testsrc=size=64x48:rate=10:duration=\(Double(n) / 10)",
                                                       "-pix_fmt", "yuv420p", path])
            guard r.status == 0 else { throw ClusterError("ffmpeg: \(r.stderrText)") }
        }
        for i in 0..<jobs {
            let n = frames[i % frames.count]
            let path = dir.path + "/clip\(i).mp4"
            try FileManager.default.copyItem(atPath: dir.path + "/src-\(n).mp4", toPath: path)
            made.append((path, n))
        }
        return made
    }
}
