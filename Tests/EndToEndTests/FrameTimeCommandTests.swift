import Foundation
import Testing
import TestSupport

/// Issue 15's time fields on real media: `duration` (the span each record stands for) against
/// ffprobe's frame timestamps, and `wall` on a live loopback stream.
@Suite(.enabled(if: TestEnv.hasAssets), .serialized)
struct FrameTimeCommandTests {
    static let model = TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx")
    static let carphone = TestEnv.asset("videos/carphone_pristine.mp4")

    /// ffprobe's (pts_time, pkt_duration_time) of every frame of the first video stream.
    static func probeFrames(_ path: String) throws -> [(pts: Double, duration: Double?)] {
        let r = try shell("ffprobe -v error -select_streams v:0 -show_entries frame=pts_time,pkt_duration_time -of csv=p=0 '\(path)'")
        try #require(r.status == 0, "ffprobe: \(r.stderrText)")
        return r.stdoutText.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ",", omittingEmptySubsequences: false)
            guard let pts = f.first.flatMap({ Double($0) }) else { return nil }
            return (pts, f.count > 1 ? Double(f[1]) : nil)
        }
    }

    func objects(_ r: ProcessResult) throws -> [[String: Any]] {
        try r.lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    /// Every 10th frame: each record spans to the next kept frame (10 frames of ffprobe's pts
    /// later); the last one its own packet duration. The same in NAME.jsonl and NAME.csv; a file
    /// carries no `wall`.
    @Test func durationIsTheSpanToTheNextKeptFrameByFFprobe() throws {
        let frames = try Self.probeFrames(Self.carphone)
        try #require(frames.count == 120)
        let kept = Array(stride(from: 0, to: 120, by: 10))
        let want: [Double] = kept.map { i in
            i + 10 < 120 ? frames[i + 10].pts - frames[i].pts : frames[i].duration ?? .nan
        }
        let r = try framepipe(["run", "--model", Self.model, "--quiet", "--top-k", "1", "--every", "10", Self.carphone])
        #expect(r.status == 0, "\(r.stderrText)")
        let objs = try objects(r)
        #expect(objs.map { $0["frame"] as? Int } == kept)
        let got = objs.map { $0["duration"] as? Double ?? -1 }
        for (g, w) in zip(got, want) { #expect(abs(g - w) < 2e-6, "durations \(got), ffprobe \(want)") }
        #expect(objs.allSatisfy { $0["wall"] == nil })

        let dir = try TestEnv.tempDir()
        let f = try framepipe(["run", "--model", Self.model, "--quiet", "--top-k", "1", "--every", "10",
                               "--output-dir", dir.path, Self.carphone])
        #expect(f.status == 0, "\(f.stderrText)")
        let csv = try String(contentsOfFile: dir.path + "/carphone_pristine.csv", encoding: .utf8).split(separator: "\n")
        #expect(csv.first.map(String.init) == "frame,pts,label1,index1,score1,duration")
        let csvDurations = csv.dropFirst().map { Double($0.split(separator: ",").last ?? "") ?? -1 }
        #expect(csvDurations == got)
        let jsonl = try String(contentsOfFile: dir.path + "/carphone_pristine.jsonl", encoding: .utf8)
        let fileDurations = jsonl.split(separator: "\n").map {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["duration"] as? Double ?? -1
        }
        #expect(fileDurations == got)
    }

    /// All frames: consecutive pts differences, as ffprobe lists them.
    @Test func everyFrameSpansOneFrameInterval() throws {
        let frames = try Self.probeFrames(Self.carphone)
        let r = try framepipe(["run", "--model", Self.model, "--quiet", "--top-k", "1", Self.carphone])
        #expect(r.status == 0, "\(r.stderrText)")
        let objs = try objects(r)
        try #require(objs.count == frames.count)
        var total = 0.0
        for (i, o) in objs.enumerated() {
            let want = i + 1 < frames.count ? frames[i + 1].pts - frames[i].pts : frames[i].duration ?? .nan
            let got = o["duration"] as? Double ?? -1
            total += got
            if abs(got - want) > 2e-6 { Issue.record("frame \(i): duration \(got), ffprobe \(want)"); break }
        }
        // The spans tile the input: first pts + their sum = the end of the last frame.
        #expect(abs(frames[0].pts + total - (frames.last!.pts + (frames.last!.duration ?? 0))) < 1e-4)
    }

    /// A live UDP MPEG-TS stream on loopback (ffmpeg -re): every frame record carries `wall`, never
    /// decreasing, within the time the stream was running, and a positive `duration`.
    @Test func wallIsPresentAndMonotonicOnALiveStream() throws {
        let port = try LiveKeyframeTests.freeUDPPort()
        let reader = Process()
        reader.executableURL = URL(fileURLWithPath: TestEnv.framepipe)
        reader.arguments = ["run", "--model", Self.model, "--top-k", "1", "--batch", "1", "--max-latency", "100",
                            "--io-timeout", "3", "--quiet", "udp://127.0.0.1:\(port)"]
        let out = Pipe(), err = Pipe()
        reader.standardOutput = out
        reader.standardError = err
        try reader.run()
        defer { if reader.isRunning { kill(reader.processIdentifier, SIGKILL) } }
        let collected = DataBox()
        let done = DispatchSemaphore(value: 0)
        Thread {
            while case let chunk = out.fileHandleForReading.availableData, !chunk.isEmpty { collected.append(chunk) }
            done.signal()
        }.start()
        let ready = Date().addingTimeInterval(90)
        while !LiveKeyframeTests.udpBound(port) && Date() < ready && reader.isRunning { usleep(50_000) }
        try #require(LiveKeyframeTests.udpBound(port), "framepipe never listened on udp port \(port)")

        let began = Date().timeIntervalSince1970
        let sender = try runProcess("/usr/bin/env", [
            "ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=6",
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
            "-f", "mpegts", "udp://127.0.0.1:\(port)?pkt_size=1316"], timeout: 60)
        #expect(sender.status == 0, "\(sender.stderrText)")
        #expect(done.wait(timeout: .now() + 30) == .success, "framepipe did not end after --io-timeout")
        reader.waitUntilExit()
        let ended = Date().timeIntervalSince1970

        let lines = String(decoding: collected.data, as: UTF8.self).split(separator: "\n")
        let frames = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["frame"] != nil }
        #expect(frames.count >= 25, "only \(frames.count) frame records")
        let walls = frames.compactMap { $0["wall"] as? Double }
        #expect(walls.count == frames.count, "records without wall: \(frames.filter { $0["wall"] == nil }.prefix(2))")
        #expect(zip(walls, walls.dropFirst()).allSatisfy { $0 <= $1 }, "wall goes back: \(walls)")
        #expect(walls.allSatisfy { $0 >= began && $0 <= ended }, "wall outside \(began)...\(ended): \(walls.first ?? 0)...\(walls.last ?? 0)")
        #expect(frames.allSatisfy { ($0["duration"] as? Double ?? 0) > 0 })
    }
}

/// Bytes collected from a reader thread.
final class DataBox: @unchecked Sendable {
    private let lock = NSLock()
    private var _data = Data()
    var data: Data { lock.lock(); defer { lock.unlock() }; return _data }
    func append(_ d: Data) { lock.lock(); _data.append(d); lock.unlock() }
}
