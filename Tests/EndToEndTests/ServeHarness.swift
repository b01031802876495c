import Foundation
import TestSupport

/// Runs `framepipe serve` as systemd would: a temporary config, a NOTIFY_SOCKET datagram socket the
/// test reads, stderr captured to a file.
final class ServeHarness {
    let root: URL
    var inbox: String { root.path + "/inbox" }
    var outbox: String { root.path + "/outbox" }
    var state: String { root.path + "/state" }
    var streams: String { root.path + "/streams" }
    var configPath: String { root.path + "/framepipe.toml" }
    var logPath: String { root.path + "/serve.log" }
    let notify: NotifySocket
    private(set) var process: Process?

    init() throws {
        root = try TestEnv.tempDir("serve")
        notify = try NotifySocket(path: root.path + "/notify.sock")
        for d in [inbox, outbox, state] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
    }

    /// The shared ImageNet model, [-1, 1] input; small batches keep the tests quick.
    /// - Parameters:
    ///   - top: more top-level keys (`settle_time = 1` ...).
    ///   - output: the `[output]` table's body (default: labels and embeddings in the lines).
    func config(topK: Int = 5, drain: Double = 20, metricsPort: Int? = nil, inbox useInbox: Bool = true,
                logLevel: String = "info", top: String = "", output: String? = nil, streams extra: String = "") -> String {
        var s = "log_level = \"\(logLevel)\"\nstate_dir = \"\(state)\"\nstream_dir = \"\(streams)\"\nmax_attempts = 3\ndrain_timeout = \(drain)\n" + top
        if useInbox { s += "inbox = \"\(inbox)\"\noutbox = \"\(outbox)\"\n" }
        if let p = metricsPort { s += "metrics_listen = \"127.0.0.1:\(p)\"\n" }
        s += """
        [model]
        path = "\(TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx"))"
        labels = "\(TestEnv.asset("models/imagenet_labels.txt"))"
        batch = 8
        threads = 2
        mean = [127.5, 127.5, 127.5]
        std = [127.5, 127.5, 127.5]
        [output]
        \(output ?? "emit = [\"labels\", \"embedding\"]")
        top_k = \(topK)

        """
        return s + extra
    }

    func writeConfig(_ text: String) throws { try text.write(toFile: configPath, atomically: true, encoding: .utf8) }

    /// Starts the daemon (config written before); `wrapper` runs it through another program
    /// (`setpriv ...`), `environment` adds variables.
    func start(wrapper: [String] = [], environment extraEnv: [String: String] = [:]) throws {
        readyMark = notify.mark
        let p = Process()
        if wrapper.isEmpty {
            p.executableURL = URL(fileURLWithPath: TestEnv.framepipe)
            p.arguments = ["serve", "--config", configPath]
        } else {
            p.executableURL = URL(fileURLWithPath: wrapper[0])
            p.arguments = Array(wrapper.dropFirst()) + [TestEnv.framepipe, "serve", "--config", configPath]
        }
        var env = ProcessInfo.processInfo.environment.merging(extraEnv) { _, new in new }
        env["NOTIFY_SOCKET"] = notify.path
        env["WATCHDOG_USEC"] = "10000000"
        env.removeValue(forKey: "WATCHDOG_PID")
        p.environment = env
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        p.standardError = log
        p.standardOutput = log
        p.standardInput = FileHandle.nullDevice
        try p.run()
        process = p
    }

    /// Waits for READY=1 (the model compiles first: allow a minute on a busy machine).
    func waitReady(timeout: Double = 90) -> Bool { notify.waitFor("READY=1", after: readyMark, timeout: timeout).found }
    private var readyMark = 0

    func signal(_ sig: Int32) { if let p = process { kill(p.processIdentifier, sig) } }

    /// Waits for the process to exit; returns (status, exitedNormally) or nil on timeout (then kills it).
    func waitExit(timeout: Double) -> (status: Int32, normal: Bool)? {
        guard let p = process else { return nil }
        let end = Date(timeIntervalSinceNow: timeout)
        while p.isRunning && Date() < end { usleep(50_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit(); process = nil; return nil }
        process = nil
        return (p.terminationStatus, p.terminationReason == .exit)
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Moves a file into the inbox the way producers should: written beside it, then renamed in.
    func drop(_ source: String, as name: String) throws {
        let tmp = root.path + "/" + name + ".incoming"
        try? FileManager.default.removeItem(atPath: tmp)
        try FileManager.default.copyItem(atPath: source, toPath: tmp)
        guard rename(tmp, inbox + "/" + name) == 0 else { throw HarnessError(description: "rename into inbox failed") }
    }

    func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    /// The names in a folder, sorted (empty when it is missing).
    func list(_ dir: String) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() }

    /// GET /metrics over loopback.
    func metrics(port: Int) throws -> String {
        let m = try shell("exec 3<>/dev/tcp/127.0.0.1/\(port); printf 'GET /metrics HTTP/1.1\\r\\n\\r\\n' >&3; timeout 5 cat <&3", timeout: 20)
        return m.stdoutText
    }

    /// The exposition's value of one series (`name{labels}` exactly as printed).
    static func value(_ text: String, _ series: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last!) }
    }

    func cleanup() {
        if let p = process, p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        notify.close()
        try? FileManager.default.removeItem(at: root)
    }
}

struct HarnessError: Error, CustomStringConvertible { let description: String }

/// A datagram socket standing in for systemd's notify socket, read continuously (as systemd does)
/// by a background thread; messages are kept in arrival order.
final class NotifySocket: @unchecked Sendable {
    let path: String
    let fd: Int32
    private let lock = NSLock()
    private var _messages: [String] = []
    private var closed = false

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        let len = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + 1)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        if rc != 0 { throw HarnessError(description: "bind \(path): \(String(cString: strerror(errno)))") }
        let sock = fd
        Thread.detachNewThread { [weak self] in
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                var p = pollfd(fd: sock, events: Int16(POLLIN), revents: 0)
                let r = poll(&p, 1, 200)
                guard let self else { return }
                self.lock.lock(); let done = self.closed; self.lock.unlock()
                if done { return }
                guard r > 0 else { continue }
                let n = buf.withUnsafeMutableBytes { recv(sock, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n > 0 {
                    let m = String(decoding: buf[0..<n], as: UTF8.self)
                    self.lock.lock(); self._messages.append(m); self.lock.unlock()
                }
            }
        }
    }

    func close() {
        lock.lock(); closed = true; lock.unlock()
    }
    deinit { Glibc.close(fd); unlink(path) }

    var messages: [String] { lock.lock(); defer { lock.unlock() }; return _messages }
    /// The number of messages so far (pass to `waitFor(_:after:)` to wait for a newer one).
    var mark: Int { messages.count }

    /// Waits (bounded) for a message containing `text` among those after `after`.
    func waitFor(_ text: String, after: Int = 0, timeout: Double) -> (found: Bool, seen: [String]) {
        let found = eventually(timeout: timeout) { messages.dropFirst(after).contains { $0.contains(text) } }
        return (found, Array(messages.dropFirst(after)))
    }
}

/// Polls `condition` every 50 ms for up to `timeout` seconds.
func eventually(timeout: Double, _ condition: () -> Bool) -> Bool {
    let end = Date(timeIntervalSinceNow: timeout)
    while Date() < end {
        if condition() { return true }
        usleep(50_000)
    }
    return condition()
}

func jsonLines(_ path: String) -> [[String: Any]] {
    let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    return text.split(separator: "\n").compactMap {
        (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
    }
}

func lineCount(_ path: String) -> Int {
    ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").count
}

/// A free-looking loopback port in a high range (tests only bind 127.0.0.1).
func randomPort() -> Int { Int.random(in: 20000...60000) }
