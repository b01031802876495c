import Foundation
import Testing
import TestSupport

/// One settings type for the command line and the service config: the same bad value is refused
/// with the same words by `run` and by `serve --check-config`, each naming the setting its own way
/// (`--batch` / `` `model.batch` ``), and a value at either end of a range is accepted by both.
@Suite struct SettingsParityTests {
    /// (flag, config table, config key, TOML value, the same value on the command line, what is wrong)
    static let bad: [(String, String, String, String, String, String)] = [
        ("--batch", "model", "batch", "2000", "2000", "must be in 1...1024 (got 2000)"),
        ("--batch", "model", "batch", "0", "0", "must be in 1...1024 (got 0)"),
        ("--threads", "model", "threads", "0", "0", "must be in 1...1024 (got 0)"),
        ("--size", "model", "size", "4097", "4097", "must be in 8...4096 (got 4097)"),
        ("--mean", "model", "mean", "[1, 2]", "1,2", "takes one number or three numbers, R,G,B (got 1,2)"),
        ("--std", "model", "std", "[1, 0, 1]", "1,0,1", "values must be positive (got 1,0,1)"),
        ("--top-k", "output", "top_k", "0", "0", "must be in 1...100000 (got 0)"),
        ("--min-score", "output", "min_score", "1.5", "1.5", "must be in 0...1 (got 1.5)"),
        ("--stream", "sampling", "stream", "70000", "70000", "must be in 0...65535 (got 70000)"),
        ("--every", "sampling", "every", "0", "0", "must be in 1...1000000000 (got 0)"),
        ("--fps", "sampling", "fps", "0", "0", "must be > 0 and <= 1000000 (got 0)"),
        ("--start", "sampling", "start", "-1", "-1", "must be in 0...1000000000 s (got -1)"),
        ("--end", "sampling", "end", "0", "0", "must be > 0 and <= 1000000000 s (got 0)"),
        ("--decoder-threads", "sampling", "decoder_threads", "65", "65", "must be in 0...64 (got 65)"),
        ("--max-pixels", "sampling", "max_pixels", "0", "0", "must be in 1...1099511627776 (got 0)"),
        ("--io-timeout", "sampling", "io_timeout", "2e6", "2e6", "must be in 0...1000000 s (got 2000000)"),
        ("--scene", "sampling", "scene", "1.5", "1.5", "must be in 0...1 (got 1.5)"),
        ("--scene", "sampling", "scene", "-0.1", "-0.1", "must be in 0...1 (got -0.1)"),
        ("--scene-min-gap", "sampling", "scene_min_gap", "-1", "-1", "must be in 0...86400 s (got -1)"),
        ("--segment-min", "output", "segment_min", "-1", "-1", "must be in 0...86400 s (got -1)"),
        ("--segment-min", "output", "segment_min", "1e6", "1e6", "must be in 0...86400 s (got 1000000)"),
    ]

    func config(in dir: URL, table: String, line: String) throws -> String {
        let path = dir.appendingPathComponent("framepipe.toml").path
        let text = """
            inbox = "\(dir.path)/in"
            outbox = "\(dir.path)/out"
            [\(table)]
            \(line)

            """
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test(arguments: Array(0..<bad.count))
    func sameValueSameMessage(index: Int) throws {
        let (flag, table, key, tomlValue, cliValue, problem) = Self.bad[index]
        let cli = try framepipe(["run", flag, cliValue, "clip.mp4"])
        #expect(cli.status == 2, "\(flag) \(cliValue): status \(cli.status)")
        #expect(cli.stderrText.contains("framepipe: error: \(flag) \(problem)"), "\(cli.stderrText)")

        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = try config(in: dir, table: table, line: "\(key) = \(tomlValue)")
        let serve = try framepipe(["serve", "--config", path, "--check-config"])
        #expect(serve.status == 78, "\(table).\(key) = \(tomlValue): status \(serve.status)")
        #expect(serve.stderrText.contains("\(path): `\(table).\(key)` \(problem)"), "\(serve.stderrText)")
    }

    @Test func startAfterEndIsTheSameRule() throws {
        let cli = try framepipe(["run", "--start", "5", "--end", "3", "clip.mp4"])
        #expect(cli.status == 2)
        #expect(cli.stderrText.contains("--start (5) must be before --end (3)"), "\(cli.stderrText)")
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = try config(in: dir, table: "sampling", line: "start = 5\nend = 3")
        let serve = try framepipe(["serve", "--config", path, "--check-config"])
        #expect(serve.status == 78)
        #expect(serve.stderrText.contains("`sampling.start` (5) must be before `sampling.end` (3)"), "\(serve.stderrText)")
    }

    /// The ends of the ranges pass both: the config's batch limit is the command line's (1024, once 256).
    @Test func rangeEndsAreAcceptedByBoth() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = try config(in: dir, table: "model", line: "batch = 1024\nthreads = 1024\nsize = 8")
        let serve = try framepipe(["serve", "--config", path, "--check-config"])
        // Past the settings: the check goes on to the model (found or not), never to a range.
        #expect(!serve.stderrText.contains("must be in"), "\(serve.stderrText)")
        let cli = try framepipe(["run", "--batch", "1024", "--threads", "1024", "--size", "8", "--every", "1000000000",
                                 "--model", "/nonexistent.onnx", "clip.mp4"])
        #expect(cli.status == 78, "\(cli.stderrText)")  // the model, not a flag, stops it
        #expect(!cli.stderrText.contains("must be in"), "\(cli.stderrText)")
    }
}
