import Foundation
import Testing
import TestSupport

enum DefaultModelInstall {
    /// The default model as framepipe finds it: the checkout's models/ (always there in a checkout),
    /// or where scripts/setup installs it.
    static let checkout = TestEnv.packageRoot.appendingPathComponent("models/mobilenet_v2_1.0_224_quant.tflite").path
    static let installed = "/usr/local/share/framepipe/models/mobilenet_v2_1.0_224_quant.tflite"
    static let imagenetLabels: Set<String> = {
        let text = (try? String(contentsOfFile: TestEnv.packageRoot.appendingPathComponent("models/imagenet_labels.txt").path,
                                encoding: .utf8)) ?? ""
        return Set(text.split(separator: "\n").map(String.init))
    }()
    /// An environment where neither FRAMEPIPE_MODEL nor a user's XDG folder picks the model.
    static func cleanEnvironment(_ dir: URL) -> [String: String] {
        ["FRAMEPIPE_MODEL": "", "XDG_DATA_HOME": dir.path, "HOME": dir.path]
    }
}

/// The README's commands with no model flag: the ImageNet MobileNetV2 that ships in models/.
@Suite(.enabled(if: TestEnv.hasAssets), .serialized)
struct DefaultModelRunTests {
    func jsonLines(_ r: ProcessResult) throws -> [[String: Any]] {
        try r.lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    /// The README's first example, as written there, run in a folder holding `video.mp4`.
    @Test func readmeFirstExampleGivesImageNetLabels() throws {
        let readme = try String(contentsOf: TestEnv.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let use = try #require(readme.range(of: "## Use"))
        let first = try #require(readme[use.upperBound...].split(separator: "\n").first { $0.hasPrefix("framepipe run") })
        #expect(first == "framepipe run video.mp4")
        let dir = try TestEnv.tempDir("readme-first")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createSymbolicLink(atPath: dir.appendingPathComponent("video.mp4").path,
                                                   withDestinationPath: TestEnv.asset("videos/bigbuckbunny.mp4"))
        let args = first.split(separator: " ").dropFirst().map(String.init)
        let r = try runProcess(TestEnv.framepipe, args, environment: DefaultModelInstall.cleanEnvironment(dir),
                               currentDirectory: dir.path)
        #expect(r.status == 0, "\(r.stderrText)")
        let objs = try jsonLines(r)
        #expect(objs.count == 132)
        for o in objs {
            let labels = o["labels"] as! [[String: Any]]
            #expect(labels.count == 5)
            #expect(labels.allSatisfy { DefaultModelInstall.imagenetLabels.contains($0["label"] as! String) })
        }
    }

    /// The acceptance check: the four segments of slideshow_dev.mp4, no model flag.
    @Test func slideshowSegmentsWithoutModelFlag() throws {
        let dir = try TestEnv.tempDir("default-slideshow")
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try runProcess(TestEnv.framepipe, ["run", "--quiet", "--emit", "both", "--top-k", "1",
                                                   TestEnv.asset("videos/slideshow_dev.mp4")],
                               environment: DefaultModelInstall.cleanEnvironment(dir))
        #expect(r.status == 0, "\(r.stderrText)")
        let objs = try jsonLines(r)
        #expect(objs.count == 200)
        let expected = ["Egyptian cat", "chickadee", "military uniform", "dragonfly"]
        for (segment, label) in expected.enumerated() {
            let frames = objs.filter { (50 * segment..<50 * (segment + 1)).contains($0["frame"] as! Int) }
            let hits = frames.filter { (($0["labels"] as! [[String: Any]])[0]["label"] as! String).hasPrefix(label) }.count
            #expect(frames.count == 50)
            #expect(hits * 100 >= 95 * frames.count, "segment \(segment) (\(label)): \(hits)/\(frames.count)")
        }
        #expect(objs.allSatisfy { ($0["embedding"] as! [Any]).count == 1280 })
    }

    @Test func modelsCommandSaysWhereTheDefaultWasFound() throws {
        let dir = try TestEnv.tempDir("default-models")
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try runProcess(TestEnv.framepipe, ["models", "--json"], environment: DefaultModelInstall.cleanEnvironment(dir))
        #expect(r.status == 0, "\(r.stderrText)")
        let o = try #require(try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])
        let model = try #require(o["model"] as? String)
        #expect([DefaultModelInstall.installed, DefaultModelInstall.checkout].contains(model))
        #expect(o["format"] as? String == "TFLite")
        #expect(o["classes"] as? Int == 1001 && o["labels"] as? Int == 1001)
        #expect(o["embedding_dim"] as? Int == 1280)
        let input = try #require(o["input"] as? [String: Any])
        #expect(input["width"] as? Int == 224 && input["height"] as? Int == 224 && input["resize"] as? String == "stretch")
        let searched = (o["searched"] as? [[String: Any]] ?? []).compactMap { $0["path"] as? String }
        #expect(searched == [dir.path + "/framepipe/models/mobilenet_v2_1.0_224_quant.tflite", DefaultModelInstall.installed,
                             DefaultModelInstall.checkout])

        let text = try runProcess(TestEnv.framepipe, ["models"], environment: DefaultModelInstall.cleanEnvironment(dir))
        #expect(text.stdoutText.contains("model: \(model)"))
        #expect(text.stdoutText.contains("\(model): present (used)"))
        #expect(text.stdoutText.contains("classes: 1001"))
    }

    /// A binary outside any checkout (as installed in /usr/local/bin) finds the model scripts/setup
    /// installed, or says every place it looked.
    @Test func installedBinaryFindsTheInstalledModelOrListsThePathsSearched() throws {
        let dir = try TestEnv.tempDir("default-installed")
        defer { try? FileManager.default.removeItem(at: dir) }
        let bin = dir.appendingPathComponent("framepipe").path
        try FileManager.default.copyItem(atPath: TestEnv.framepipe, toPath: bin)
        let r = try runProcess(bin, ["models", "--json"], environment: DefaultModelInstall.cleanEnvironment(dir))
        if FileManager.default.isReadableFile(atPath: DefaultModelInstall.installed) {
            #expect(r.status == 0, "\(r.stderrText)")
            let o = try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any]
            #expect(o?["model"] as? String == DefaultModelInstall.installed)
        } else {
            FileHandle.standardError.write(Data("note: \(DefaultModelInstall.installed) absent (scripts/setup installs it)\n".utf8))
            #expect(r.status != 0 && !r.signaled)
            #expect(r.stderrText.contains("no model: pass --model PATH"))
            #expect(r.stderrText.contains("/usr/local/share/framepipe/models"), "\(r.stderrText)")
        }
    }

    static var canSandbox: Bool {
        getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare")
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")
            && FileManager.default.isReadableFile(atPath: DefaultModelInstall.installed)
    }

    /// As the hardened unit runs it (systemd is not PID 1 here, so its settings are imitated): a
    /// private mount namespace with /root and /home hidden (ProtectHome) and / read-only
    /// (ProtectSystem=strict), an unprivileged uid with no home (DynamicUser), a binary outside any
    /// checkout (/usr/local/bin). It must still find the model scripts/setup installed.
    @Test(.enabled(if: canSandbox)) func hardenedSandboxFindsTheInstalledModel() throws {
        let dir = try TestEnv.tempDir("default-sandbox")
        defer { try? FileManager.default.removeItem(at: dir) }
        let bin = dir.appendingPathComponent("framepipe").path
        try FileManager.default.copyItem(atPath: TestEnv.framepipe, toPath: bin)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.path)
        let video = TestEnv.asset("videos/slideshow_dev.mp4")
        let script = """
            mount -t tmpfs -o ro none /root && mount -t tmpfs -o ro none /home && mount -o remount,bind,ro / && \
            exec setpriv --reuid=61234 --regid=61234 --clear-groups env -i HOME=/nonexistent PATH=/usr/bin:/bin \
                "$0" run --quiet --every 50 --top-k 1 "$1"
            """
        let r = try runProcess("/usr/bin/unshare", ["-m", "/bin/sh", "-c", script, bin, video], timeout: 300)
        #expect(r.status == 0, "\(r.stderrText)")
        let labels = try jsonLines(r).map { (($0["labels"] as! [[String: Any]])[0]["label"] as! String) }
        #expect(labels.count == 4)
        for (got, want) in zip(labels, ["Egyptian cat", "chickadee", "military uniform", "dragonfly"]) {
            #expect(got.hasPrefix(want), "\(labels)")
        }
    }

    /// `framepipe serve` with a config that has no `model.path`, in the same imitated sandbox: the
    /// inbox file is labelled with the installed ImageNet model.
    @Test(.enabled(if: canSandbox)) func hardenedSandboxServeWithoutModelPath() throws {
        let dir = try TestEnv.tempDir("default-serve")
        defer { try? FileManager.default.removeItem(at: dir) }
        let fm = FileManager.default
        try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.path)
        let bin = dir.appendingPathComponent("framepipe").path
        try fm.copyItem(atPath: TestEnv.framepipe, toPath: bin)
        let state = dir.appendingPathComponent("state")
        try fm.createDirectory(at: state, withIntermediateDirectories: true)
        try fm.setAttributes([.ownerAccountID: 61234, .groupOwnerAccountID: 61234], ofItemAtPath: state.path)
        let config = dir.appendingPathComponent("framepipe.toml").path
        try """
            state_dir = "\(state.path)"
            inbox = "\(state.path)/inbox"
            outbox = "\(state.path)/outbox"
            stream_dir = "\(state.path)/streams"
            """.write(toFile: config, atomically: true, encoding: .utf8)
        // The state folder stays writable, as StateDirectory= does under ProtectSystem=strict.
        let script = """
            mount -t tmpfs -o ro none /root && mount -t tmpfs -o ro none /home && mount --bind "$2" "$2" && \
            mount -o remount,bind,ro / && \
            exec setpriv --reuid=61234 --regid=61234 --clear-groups env -i HOME=/nonexistent PATH=/usr/bin:/bin \
                "$0" serve --config "$1"
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        process.arguments = ["-m", "/bin/sh", "-c", script, bin, config, state.path]   // sh execs: the PID is framepipe's
        let log = dir.appendingPathComponent("serve.log")
        fm.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        defer {
            if process.isRunning { process.terminate() }   // SIGTERM to this PID only
            process.waitUntilExit()
        }
        let inbox = state.appendingPathComponent("inbox"), out = state.appendingPathComponent("outbox/slideshow.jsonl")
        var waited = 0.0
        while !fm.fileExists(atPath: inbox.path) && waited < 60 && process.isRunning { Thread.sleep(forTimeInterval: 0.2); waited += 0.2 }
        try #require(fm.fileExists(atPath: inbox.path), "serve did not start: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
        let staged = state.appendingPathComponent("staged.mp4")
        try fm.copyItem(atPath: TestEnv.asset("videos/slideshow_dev.mp4"), toPath: staged.path)
        try fm.moveItem(at: staged, to: inbox.appendingPathComponent("slideshow.mp4"))
        waited = 0
        while !fm.fileExists(atPath: out.path) && waited < 180 && process.isRunning { Thread.sleep(forTimeInterval: 0.5); waited += 0.5 }
        let logText = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        let text = try #require(try? String(contentsOf: out, encoding: .utf8), "no output; serve log:\n\(logText)")
        let objs = try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(objs.count == 200)
        let top = objs.map { (($0["labels"] as! [[String: Any]])[0]["label"] as! String) }
        for (segment, want) in ["Egyptian cat", "chickadee", "military uniform", "dragonfly"].enumerated() {
            let hits = top[(50 * segment)..<(50 * (segment + 1))].filter { $0.hasPrefix(want) }.count
            #expect(hits >= 48, "segment \(segment): \(hits)/50 \(want)")
        }
        #expect(logText.contains("model ready"), "\(logText)")
    }

    @Test func inspectAndBenchTakeTheDefaultModelToo() throws {
        let dir = try TestEnv.tempDir("default-inspect")
        defer { try? FileManager.default.removeItem(at: dir) }
        let env = DefaultModelInstall.cleanEnvironment(dir)
        let i = try runProcess(TestEnv.framepipe, ["inspect"], environment: env)
        #expect(i.status == 0, "\(i.stderrText)")
        #expect(i.stdoutText.contains("[N, 3, 224, 224]"))
        #expect(i.stdoutText.contains("classes: 1001"))
        #expect(i.stdoutText.contains("224x224, resize stretch"))
        let b = try runProcess(TestEnv.framepipe, ["bench", "--batch", "2", "--iterations", "2", "--warmup", "1", "--json"],
                               environment: env)
        #expect(b.status == 0, "\(b.stderrText)")
        let o = try JSONSerialization.jsonObject(with: b.stdout) as! [String: Any]
        #expect((o["images_per_s"] as? Double ?? 0) > 0)
        #expect((o["model"] as? String)?.hasSuffix("mobilenet_v2_1.0_224_quant.tflite") == true)
    }
}
