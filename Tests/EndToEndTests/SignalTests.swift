import Foundation
import Testing
import TestSupport

/// `run` and `serve` share one signal path (`SignalRelay`): a SIGTERM or SIGINT is never lost and
/// never kills the process with its default action, also when it comes during startup, while the
/// model compiles. Each test signals only the PID it started.
@Suite(.enabled(if: TestEnv.hasAssets), .serialized)
struct SignalTests {
    static let model = TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx")
    static let bunny = TestEnv.asset("videos/bigbuckbunny.mp4")

    /// Starts framepipe with `arguments`, sends `sig` after `delay` seconds, waits up to 60 s.
    /// `stdout`: /dev/null unless a test gives its own (an undrained pipe, say).
    func signalled(_ arguments: [String], _ sig: Int32, after delay: Double,
                   stdout: Any = FileHandle.nullDevice) throws -> (Process, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestEnv.framepipe)
        p.arguments = arguments
        let err = Pipe()
        p.standardOutput = stdout
        p.standardError = err
        try p.run()
        Thread.sleep(forTimeInterval: delay)
        kill(p.processIdentifier, sig)
        var waited = 0.0
        while p.isRunning && waited < 60 { Thread.sleep(forTimeInterval: 0.1); waited += 0.1 }
        if p.isRunning {
            Issue.record("\(arguments.first ?? ""): still running 60 s after signal \(sig)")
            kill(p.processIdentifier, SIGKILL)
        }
        p.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return (p, stderr)
    }

    @Test(arguments: [SIGTERM, SIGINT])
    func runStopsCleanlyOnASignalDuringStartup(sig: Int32) throws {
        // 0.5 s: while the binary starts or the model compiles (which takes longer than that here).
        let (p, stderr) = try signalled(["run", "--quiet", "--model", Self.model, Self.bunny], sig, after: 0.5)
        #expect(p.terminationReason == .exit, "ended by a signal: \(stderr)")
        #expect(p.terminationStatus == 128 + sig, "status \(p.terminationStatus): \(stderr)")
    }

    @Test func runStopsCleanlyOnASignalMidRun() throws {
        // The clip 40 times, so the run is still going at 4 s on a fast CPU (one pass takes about 1 s).
        let (p, stderr) = try signalled(["run", "--quiet", "--model", Self.model] + Array(repeating: Self.bunny, count: 40),
                                        SIGTERM, after: 4)
        #expect(p.terminationReason == .exit && p.terminationStatus == 128 + SIGTERM, "status \(p.terminationStatus): \(stderr)")
    }

    @Test func runStopsOnASignalWhileItsReaderHasStoppedReading() throws {
        // stdout is a pipe nobody reads: embedding lines (about 13 KB each) fill its 64 KB within
        // the first batch, and then the writer is blocked in the middle of the run. The signal
        // must still end it, with the signal's status, not leave it waiting for the reader forever.
        let undrained = Pipe()
        defer { try? undrained.fileHandleForReading.close() }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestEnv.framepipe)
        p.arguments = ["run", "--quiet", "--emit", "both", "--model", Self.model] + Array(repeating: Self.bunny, count: 40)
        let err = Pipe()
        p.standardOutput = undrained
        p.standardError = err
        try p.run()
        // Wait (up to 60 s: a loaded machine compiles slowly) until the first line is in the pipe,
        // then 2 s more, in which the next lines fill it and block the writer.
        var ready = pollfd(fd: undrained.fileHandleForReading.fileDescriptor, events: Int16(POLLIN), revents: 0)
        var waited = 0
        while poll(&ready, 1, 100) == 0 && p.isRunning && waited < 600 { waited += 1 }
        #expect(ready.revents & Int16(POLLIN) != 0, "no output within 60 s")
        Thread.sleep(forTimeInterval: 2)
        #expect(p.isRunning, "the run ended before its reader could block it")
        kill(p.processIdentifier, SIGTERM)
        var after = 0.0
        while p.isRunning && after < 60 { Thread.sleep(forTimeInterval: 0.1); after += 0.1 }
        if p.isRunning {
            Issue.record("still running 60 s after SIGTERM with a reader that does not read")
            kill(p.processIdentifier, SIGKILL)
        }
        p.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationReason == .exit && p.terminationStatus == 128 + SIGTERM, "status \(p.terminationStatus): \(stderr)")
        // What it wrote before it blocked starts with a whole line.
        let head = undrained.fileHandleForReading.readDataToEndOfFile()  // the writer has exited: EOF
        let firstLine = head.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).first ?? Data()
        #expect((try? JSONSerialization.jsonObject(with: Data(firstLine))) != nil, "first line: \(firstLine.count) bytes")
    }

    @Test(arguments: [0.5, 5.0])
    func serveDrainsAndExitsZeroOnSIGTERM(delay: Double) throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("framepipe.toml").path
        try """
            state_dir = "\(dir.path)/state"
            inbox = "\(dir.path)/inbox"
            outbox = "\(dir.path)/outbox"
            drain_timeout = 5
            [model]
            path = "\(Self.model)"
            batch = 4
            threads = 2

            """.write(toFile: config, atomically: true, encoding: .utf8)
        let (p, stderr) = try signalled(["serve", "--config", config], SIGTERM, after: delay)
        #expect(p.terminationReason == .exit, "ended by a signal: \(stderr)")
        #expect(p.terminationStatus == 0, "status \(p.terminationStatus): \(stderr)")
    }
}
