import Foundation
import Testing
import TestSupport

/// The systemd units as CI checks them: `systemd-analyze verify` passes and the offline security
/// rating of framepipe.service is 2.0 or lower.
@Suite struct ServeUnitTests {
    static var hasSystemdAnalyze: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") }

    /// A copy of the unit whose ExecStart points at the built binary (verify checks it exists).
    func unitCopy(_ name: String, as target: String) throws -> (dir: URL, path: String) {
        let dir = try TestEnv.tempDir("units")
        let text = try String(contentsOf: TestEnv.packageRoot.appendingPathComponent("systemd/\(name)"), encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/framepipe", with: TestEnv.framepipe)
        let path = dir.appendingPathComponent(target).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return (dir, path)
    }

    @Test(.enabled(if: hasSystemdAnalyze), arguments: [("framepipe.service", "framepipe.service"),
                                                       ("framepipe@.service", "framepipe@cam.service")])
    func unitVerifiesAndRatesTwoOrLower(name: String, target: String) throws {
        let (dir, path) = try unitCopy(name, as: target)
        defer { try? FileManager.default.removeItem(at: dir) }
        let verify = try runProcess("/usr/bin/systemd-analyze", ["verify", path], timeout: 60)
        #expect(verify.status == 0, "\(verify.stderrText)")
        #expect(!verify.stderrText.contains(target), "warnings about the unit: \(verify.stderrText)")
        let security = try runProcess("/usr/bin/systemd-analyze", ["security", "--offline=yes", path], timeout: 60)
        let text = security.stdoutText + security.stderrText
        let line = try #require(text.split(separator: "\n").first { $0.contains("Overall exposure level") }, "\(text)")
        let number = line.split(separator: ":").last!.split(separator: " ").first.flatMap { Double($0) }
        let score = try #require(number, "\(line)")
        #expect(score <= 2.0, "\(line)")
    }

    @Test func unitKeepsJITMemoryAllowedAndTheHardeningAsked() throws {
        let text = try String(contentsOf: TestEnv.packageRoot.appendingPathComponent("systemd/framepipe.service"), encoding: .utf8)
        for key in ["Type=notify", "DynamicUser=yes", "StateDirectory=framepipe", "ProtectSystem=strict", "ProtectHome=yes",
                    "PrivateTmp=yes", "PrivateDevices=yes", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n",
                    "RestrictAddressFamilies=", "SystemCallFilter=@system-service", "MemoryMax=", "Restart=on-failure",
                    "WatchdogSec=", "TimeoutStopSec=", "MemoryDenyWriteExecute=no"] {
            #expect(text.contains(key), "missing \(key)")
        }
    }

    @Test func exampleConfigPassesTheBinarysCheck() throws {
        let example = TestEnv.packageRoot.appendingPathComponent("systemd/framepipe.toml.example").path
        let ok = try framepipe(["serve", "--config", example, "--check-config"], timeout: 60)
        #expect(ok.status == 0, "\(ok.stderrText)")
        let missing = try framepipe(["serve", "--config", "/nonexistent/framepipe.toml"], timeout: 60)
        #expect(missing.status == 78)
        #expect(missing.stderrText.contains("/nonexistent/framepipe.toml: cannot read the configuration file"))
        let help = try framepipe(["serve", "--help"], timeout: 60)
        #expect(help.stdoutText.contains("--config <config>"))
        #expect(help.stdoutText.contains("/etc/framepipe/framepipe.toml"))
    }
}
