import Foundation
import Testing
import TestSupport

/// The systemd units as CI checks them: `systemd-analyze verify` passes and the offline security
/// rating of framepipe.service is 2.0 or lower.
@Suite struct ServeUnitTests {
    static var hasSystemdAnalyze: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") }

    /// A copy of the unit whose ExecStart points at the built binary (verify checks it exists),
    /// with `extra` appended (a drop-in's lines).
    func unitCopy(_ name: String, as target: String, extra: String = "") throws -> (dir: URL, path: String) {
        let dir = try TestEnv.tempDir("units")
        let text = try String(contentsOf: TestEnv.packageRoot.appendingPathComponent("systemd/\(name)"), encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/framepipe", with: TestEnv.framepipe) + extra
        let path = dir.appendingPathComponent(target).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return (dir, path)
    }

    /// The producers drop-in (systemd/producers.conf) as scripts/install fills it in.
    static var producersDropIn: String {
        let text = (try? String(contentsOf: TestEnv.packageRoot.appendingPathComponent("systemd/producers.conf"), encoding: .utf8)) ?? ""
        return "\n" + text.replacingOccurrences(of: "@GROUP@", with: "users")
    }

    @Test(.enabled(if: hasSystemdAnalyze), arguments: [("framepipe.service", "framepipe.service", false),
                                                       ("framepipe@.service", "framepipe@cam.service", false),
                                                       ("framepipe.service", "framepipe.service", true)])
    func unitVerifiesAndRatesTwoOrLower(name: String, target: String, producers: Bool) throws {
        let (dir, path) = try unitCopy(name, as: target, extra: producers ? Self.producersDropIn : "")
        if producers {
            let text = try String(contentsOfFile: path, encoding: .utf8)
            #expect(text.contains("SupplementaryGroups=users") && text.contains("ReadWritePaths=/var/spool/framepipe"))
        }
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

    /// `serve --check-config` with `--unit` (a unit copy whose Environment= names the model the
    /// service would find), so the result does not depend on what is installed on this machine.
    func check(config: String, unitExtra: String = "", configName: String = "framepipe.toml",
               unitText: ((String) -> String)? = nil) throws -> ProcessResult {
        let dir = try TestEnv.tempDir("checkcfg")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (udir, unit) = try unitCopy("framepipe.service", as: "framepipe.service")
        defer { try? FileManager.default.removeItem(at: udir) }
        var text = try String(contentsOfFile: unit, encoding: .utf8)
        text = text.replacingOccurrences(of: "[Service]\n", with: "[Service]\n" + unitExtra)
        if let unitText { text = unitText(text) }
        try text.write(toFile: unit, atomically: true, encoding: .utf8)
        let path = dir.path + "/" + configName
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        return try framepipe(["serve", "--config", path, "--check-config", "--unit", unit], timeout: 120)
    }

    static let model = TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx")
    static var example: String {
        (try? String(contentsOfFile: TestEnv.packageRoot.appendingPathComponent("systemd/framepipe.toml.example").path, encoding: .utf8)) ?? ""
    }

    @Test func exampleConfigPassesTheBinarysCheck() throws {
        // The example as shipped (no model.path): the default model the service would find.
        let ok = try check(config: Self.example, unitExtra: "Environment=FRAMEPIPE_MODEL=\(Self.model)\n")
        #expect(ok.status == 0, "\(ok.stderrText)")
        #expect(ok.stdoutText.contains("model: \(Self.model) (the default model): loads and compiles"), "\(ok.stdoutText)")
        #expect(ok.stdoutText.contains("(given): TimeoutStopSec 30.0 s > drain_timeout 20.0 s"), "\(ok.stdoutText)")
        #expect(ok.stdoutText.hasSuffix("framepipe.toml: OK\n"))
        let missing = try framepipe(["serve", "--config", "/nonexistent/framepipe.toml"], timeout: 60)
        #expect(missing.status == 78)
        #expect(missing.stderrText.contains("/nonexistent/framepipe.toml: cannot read the configuration file"))
        let help = try framepipe(["serve", "--help"], timeout: 60)
        #expect(help.stdoutText.contains("--config <config>"))
        #expect(help.stdoutText.contains("/etc/framepipe/framepipe.toml"))
        #expect(help.stdoutText.contains("docs/serve.md"))
        #expect(FileManager.default.fileExists(atPath: TestEnv.packageRoot.appendingPathComponent("docs/serve.md").path))
    }

    @Test func checkConfigRefusesWhatTheServiceCouldNotRun() throws {
        let fm = FileManager.default
        // Outside /tmp (the unit has PrivateTmp) and outside the home folders, under .build.
        let place = TestEnv.packageRoot.appendingPathComponent(".build/checkcfg-\(getpid())").path
        try fm.createDirectory(atPath: place, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: place) }
        chmod(place, 0o755)
        func config(model: String, drain: Int = 20) -> String {
            "inbox = \"inbox\"\noutbox = \"outbox\"\ndrain_timeout = \(drain)\n[model]\npath = \"\(model)\"\n"
        }
        func refused(_ r: ProcessResult, _ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(r.status == 78, "\(r.stdoutText)\(r.stderrText)", sourceLocation: sourceLocation)
            #expect(r.stderrText.contains(text), "\(r.stderrText)", sourceLocation: sourceLocation)
            #expect(r.stderrText.split(separator: "\n").count == 1, "one line: \(r.stderrText)", sourceLocation: sourceLocation)
        }
        // A model that does not exist (the issue: this used to pass, then crash-loop).
        refused(try check(config: config(model: "/nonexistent/m.onnx")), "model /nonexistent/m.onnx: No such file or directory")
        refused(try check(config: "inbox = \"inbox\"\noutbox = \"outbox\"\n", unitExtra: "Environment=FRAMEPIPE_MODEL=/nonexistent/default.onnx\n"),
                "model /nonexistent/default.onnx: No such file or directory")
        // Readable by root only: the dynamic user cannot read it.
        let privateModel = place + "/private.onnx"
        try fm.copyItem(atPath: Self.model, toPath: privateModel)
        chmod(privateModel, 0o600)
        refused(try check(config: config(model: privateModel)), "not readable by the service's dynamic user (mode 600")
        // Under /tmp: the service has its own.
        let tmp = try TestEnv.tempDir("tmpmodel")
        defer { try? fm.removeItem(at: tmp) }
        try fm.copyItem(atPath: Self.model, toPath: tmp.path + "/m.onnx")
        refused(try check(config: config(model: tmp.path + "/m.onnx")), "PrivateTmp=")
        // In a home folder (where scripts/setup puts the model for the shell commands).
        let home = (NSHomeDirectory() as NSString).appendingPathComponent(".local/share/framepipe/models/default.h5")
        if fm.fileExists(atPath: home), home.hasPrefix("/root/") || home.hasPrefix("/home/") {
            refused(try check(config: config(model: home)), "hidden from the service by ProtectHome=")
        }
        // Not a model: loads fail at check time, not at the first start.
        let junk = place + "/junk.onnx"
        try Data(repeating: 7, count: 4096).write(to: URL(fileURLWithPath: junk))
        chmod(junk, 0o644)
        refused(try check(config: config(model: junk)), "cannot load model \(junk)")
        // drain_timeout must stay below TimeoutStopSec (30 s in the shipped unit; drop-in style override).
        refused(try check(config: config(model: Self.model, drain: 30)), "drain_timeout = 30.0 s must be below TimeoutStopSec = 30.0 s")
        let longer = try check(config: config(model: Self.model, drain: 40), unitText: { $0 + "\n[Service]\nTimeoutStopSec=1min 30s\n" })
        #expect(longer.status == 0, "\(longer.stderrText)")
        #expect(longer.stdoutText.contains("TimeoutStopSec 90.0 s > drain_timeout 40.0 s"))
        // No model at all: the advice is about the config, never `--model` (serve has none).
        let fallback = "/usr/local/share/framepipe/models"
        let installed = ((try? fm.contentsOfDirectory(atPath: fallback)) ?? []).contains { $0.hasPrefix("default.") || $0.hasSuffix(".tflite") }
        if !installed {
            let none = try check(config: "inbox = \"inbox\"\noutbox = \"outbox\"\n")
            refused(none, "no model: set `model.path` in")
            #expect(!none.stderrText.contains("--model"), "\(none.stderrText)")
            #expect(none.stderrText.contains("scripts/install"))
        }
    }

    @Test func installRefusesABinaryThatNeedsOptSwiftAndStagesAStaticOne() throws {
        let stage = try TestEnv.tempDir("stage")
        defer { try? FileManager.default.removeItem(at: stage) }
        let script = TestEnv.packageRoot.appendingPathComponent("scripts/install").path
        let ldd = try shell("ldd '\(TestEnv.framepipe)'", timeout: 30).stdoutText
        if ldd.contains("/opt/swift") {
            let r = try shell("DESTDIR='\(stage.path)' '\(script)' --binary '\(TestEnv.framepipe)' 2>&1", timeout: 60)
            #expect(r.status != 0)
            #expect(r.stdoutText.contains("needs libraries outside the system folders"), "\(r.stdoutText)")
        }
        let staticBinary = TestEnv.packageRoot.appendingPathComponent(".build-static/release/framepipe").path
        guard FileManager.default.isExecutableFile(atPath: staticBinary) else {
            print("[serve] SKIPPED staged install: no .build-static/release/framepipe (scripts/install builds it)")
            return
        }
        let r = try shell("DESTDIR='\(stage.path)' '\(script)' --binary '\(staticBinary)' 2>&1", timeout: 120)
        #expect(r.status == 0, "\(r.stdoutText)")
        for f in ["usr/local/bin/framepipe", "etc/systemd/system/framepipe.service", "etc/systemd/system/framepipe@.service",
                  "etc/framepipe/framepipe.toml", "usr/local/share/doc/framepipe/serve.md",
                  "usr/local/share/framepipe/systemd/framepipe.service"] {
            #expect(FileManager.default.fileExists(atPath: stage.path + "/" + f), "missing \(f)")
        }
        #expect(!(try shell("ldd '\(stage.path)/usr/local/bin/framepipe'", timeout: 30).stdoutText.contains("/opt/swift")))
    }
}
