import Foundation
import Output
import Pipeline
@testable import Service

struct FakeError: Error, CustomStringConvertible { let description: String }

final class FakeFrame: PipelineFrame {
    let meta: FrameMeta
    init(index: Int) { meta = FrameMeta(index: index, pts: Double(index) / 25, keyframe: index == 0) }
}

/// Reads a fake "video": a text file `FAKE <frames> [delay_us]`; anything else is invalid data.
/// A URL `fake://N` yields N frames, 5 ms apart, then ends (a stream that drops).
final class FakeReader: FrameReader, @unchecked Sendable {
    let count: Int
    let delay: useconds_t
    private var i = 0
    private let lock = NSLock()
    private var cancelled = false

    init(input: String) throws {
        if input.hasPrefix("fake://") {
            count = Int(input.dropFirst(7).prefix { $0.isNumber }) ?? 0
            delay = 5000
            return
        }
        guard let text = try? String(contentsOfFile: input, encoding: .utf8) else {
            throw FakeError(description: "cannot open \(input)")
        }
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        if parts.first == "HANG" { count = -1; delay = 0; return }  // blocks until cancelled: a wedged input
        guard parts.count >= 2, parts[0] == "FAKE", let n = Int(parts[1]) else {
            throw FakeError(description: "invalid data found when processing input")
        }
        count = n
        delay = parts.count >= 3 ? useconds_t(parts[2]) ?? 0 : 0
    }

    func next() throws -> PipelineFrame? {
        lock.lock(); let c = cancelled; lock.unlock()
        if c { throw FakeError(description: "interrupted") }
        if count < 0 {
            while true {
                usleep(10_000)
                lock.lock(); let c2 = cancelled; lock.unlock()
                if c2 { throw FakeError(description: "interrupted") }
            }
        }
        guard i < count else { return nil }
        if delay > 0 { usleep(delay) }
        defer { i += 1 }
        return FakeFrame(index: i)
    }
    func cancel() { lock.lock(); cancelled = true; lock.unlock() }
    var framesDecoded: Int { i }
    var decodeErrors: Int { 0 }
    var duration: Double? { Double(count) / 25 }
}

final class FakeWriter: SampleWriter {
    func write(_ frame: PipelineFrame, to slot: UnsafeMutablePointer<Float>) throws {
        for i in 0..<4 { slot[i] = Float(frame.meta.index) }
    }
}

/// 4 floats in, 3-d embedding and 5 logits out (class = frame index % 5). Thread-safe.
final class FakeRunner: BatchRunner, @unchecked Sendable {
    let sampleSize = 4, embeddingDim = 3, classCount = 5, maxBatch = 16
    func run(input: UnsafePointer<Float>, count: Int,
             embeddings: UnsafeMutablePointer<Float>?, logits: UnsafeMutablePointer<Float>?) throws {
        for n in 0..<count {
            let v = input[n * sampleSize]
            for d in 0..<embeddingDim { embeddings?[n * embeddingDim + d] = v + Float(d) }
            for c in 0..<classCount { logits?[n * classCount + c] = Int(v) % classCount == c ? 8 : 0 }
        }
    }
}

final class FakeEngine: ServeEngine {
    let runner: BatchRunner = FakeRunner()
    let labels: [String]? = ["zero", "one", "two", "three", "four"]
    let model: ModelConfig
    init(model: ModelConfig) { self.model = model }
    private let lock = NSLock()
    private var _samplings: [String: SamplingSettings] = [:]
    /// The `[sampling]` settings each input's plan was made with.
    var samplings: [String: SamplingSettings] { lock.lock(); defer { lock.unlock() }; return _samplings }
    func plan(input: String, live: Bool, sampling: SamplingSettings, sink: (() throws -> FrameSink)?) -> InputPlan {
        lock.lock(); _samplings[input] = sampling; lock.unlock()
        return InputPlan(name: input, live: live, openReader: { try FakeReader(input: input) },
                  makeWriter: { FakeWriter() }, makeSink: sink)
    }
}

/// A datagram socket standing in for systemd's notify socket.
final class NotifyListener {
    let path: String
    let fd: Int32
    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        let len = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + (bytes[0] == 0 ? 0 : 1))
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        if rc != 0 { throw FakeError(description: "bind \(path): \(String(cString: strerror(errno)))") }
    }
    deinit { close(fd); if !path.hasPrefix("@") { unlink(path) } }

    /// The next datagram, or nil after `timeout` seconds.
    func receive(timeout: Double) -> String? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(timeout * 1000)) > 0 else { return nil }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
    }

    /// Every message arriving within `seconds`.
    func collect(for seconds: Double) -> [String] {
        let end = Date(timeIntervalSinceNow: seconds)
        var out: [String] = []
        while Date() < end {
            if let m = receive(timeout: max(0.01, end.timeIntervalSinceNow)) { out.append(m) }
        }
        return out
    }

    /// Waits (bounded) for a message containing `text`; returns every message seen.
    func waitFor(_ text: String, timeout: Double) -> (found: Bool, seen: [String]) {
        let end = Date(timeIntervalSinceNow: timeout)
        var seen: [String] = []
        while Date() < end {
            if let m = receive(timeout: max(0.01, end.timeIntervalSinceNow)) {
                seen.append(m)
                if m.contains(text) { return (true, seen) }
            }
        }
        return (false, seen)
    }
}

/// Polls `condition` every 20 ms for up to `timeout` seconds.
func eventually(timeout: Double = 10, _ condition: () -> Bool) -> Bool {
    let end = Date(timeIntervalSinceNow: timeout)
    while Date() < end {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}

func writeFile(_ path: String, _ text: String) {
    _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
}

func readLines(_ path: String) -> [String] {
    ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
}

func json(_ line: String) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
}
