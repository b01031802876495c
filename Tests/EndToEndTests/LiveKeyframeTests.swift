import Foundation
import Testing
import TestSupport

/// Issue #13, item 4: on a live input, `--keyframes` emits each key frame as soon as it is decoded,
/// not when later key frames push it out of the decoder (frame threads held each back 2 GOPs here,
/// and the last ones until the end of the stream).
@Suite(.enabled(if: TestEnv.hasAssets))
struct LiveKeyframeTests {
    static let model = TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx")

    /// A UDP port on 127.0.0.1 that was free a moment ago.
    static func freeUDPPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw TestSupportError("bind: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// True once some process has a UDP socket bound to `port` (/proc/net/udp lists it in hex).
    static func udpBound(_ port: Int) -> Bool {
        guard let table = try? String(contentsOfFile: "/proc/net/udp", encoding: .utf8) else { return false }
        return table.contains(String(format: ":%04X ", port))
    }

    @Test func liveKeyFramesComeOutWithinOneGOP() throws {
        let port = try Self.freeUDPPort()
        let reader = Process()
        reader.executableURL = URL(fileURLWithPath: TestEnv.framepipe)
        reader.arguments = ["run", "--model", Self.model, "--keyframes", "--batch", "1", "--max-latency", "100",
                            "--io-timeout", "3", "--quiet", "udp://127.0.0.1:\(port)"]
        let out = Pipe(), err = Pipe()
        reader.standardOutput = out
        reader.standardError = err
        try reader.run()
        defer { if reader.isRunning { kill(reader.processIdentifier, SIGKILL) } }

        let lock = NSLock()
        nonisolated(unsafe) var arrivals: [(Date, String)] = []
        let done = DispatchSemaphore(value: 0)
        Thread {
            var pending = Data()
            while case let chunk = out.fileHandleForReading.availableData, !chunk.isEmpty {
                let now = Date()
                pending += chunk
                while let nl = pending.firstIndex(of: 10) {
                    let line = String(decoding: pending[pending.startIndex..<nl], as: UTF8.self)
                    pending = Data(pending[(nl + 1)...])
                    lock.lock(); arrivals.append((now, line)); lock.unlock()
                }
            }
            done.signal()
        }.start()

        // The model is loaded and the socket bound before the first packet is sent.
        let ready = Date().addingTimeInterval(90)
        while !Self.udpBound(port) && Date() < ready && reader.isRunning { usleep(50_000) }
        try #require(Self.udpBound(port), "framepipe never listened on udp port \(port)")

        // 10 s in real time, one key frame per second (GOP 25 at 25 fps), pts from 0.
        let sent = Date()
        let sender = try runProcess("/usr/bin/env", [
            "ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=10",
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-keyint_min", "25",
            "-muxdelay", "0", "-muxpreload", "0", "-f", "mpegts", "udp://127.0.0.1:\(port)?pkt_size=1316"], timeout: 60)
        #expect(sender.status == 0, "\(sender.stderrText)")
        #expect(done.wait(timeout: .now() + 30) == .success, "framepipe did not end after --io-timeout")
        reader.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(reader.terminationReason == .exit && [0, 1].contains(reader.terminationStatus), "\(stderr)")

        lock.lock(); let lines = arrivals; lock.unlock()
        var lags: [(pts: Double, lag: Double)] = []
        for (when, line) in lines {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let pts = obj["pts"] as? Double else { continue }
            #expect(obj["keyframe"] as? Bool == true)
            lags.append((pts, when.timeIntervalSince(sent) - pts))
        }
        // FFmpeg reads up to 5 s of the stream to find its parameters before the first frame comes
        // out; from then on every key frame must be out before the next one is even sent.
        let steady = lags.filter { $0.pts >= 5.5 }
        print("live key frames: " + lags.map { String(format: "pts %.1f lag %.2fs", $0.pts, $0.lag) }.joined(separator: ", "))
        #expect(steady.count >= 3, "too few key frames after probing: \(lags)")
        for k in steady {
            #expect(k.lag < 1.0, "key frame at pts \(k.pts) came out \(k.lag) s after it was sent (GOP 1 s)")
        }
        #expect(lags.contains { $0.pts >= 8.5 }, "the last key frames never came out: \(lags)")
    }
}
