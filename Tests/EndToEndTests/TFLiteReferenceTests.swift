import Foundation
import Testing
import TestSupport

/// framepipe on the default .tflite against LiteRT running the same file, and against the shared
/// ONNX made from it. LiteRT runs the uint8 model (its probabilities step by 1/256); framepipe the
/// dequantized fp32 graph, so top-1 must agree and probabilities stay close.
@Suite(.enabled(if: TestEnv.hasAssets && TestEnv.hasPython), .serialized)
struct TFLiteReferenceTests {
    static let model = TestEnv.packageRoot.appendingPathComponent("models/mobilenet_v2_1.0_224_quant.tflite").path
    static let labels = TestEnv.packageRoot.appendingPathComponent("models/imagenet_labels.txt").path
    static let script = TestEnv.packageRoot.appendingPathComponent("Tests/TFLiteImportTests/Fixtures/litert_reference.py").path
    static let images = ["bird.bmp", "cat.bmp", "dragonfly.bmp", "grace_hopper.bmp", "kite_and_cold.jpg", "labrador.bmp",
                         "samoyed.bmp"].map { TestEnv.asset("images/\($0)") }

    /// LiteRT's top-5 per frame (PyAV bilinear resize to 224x224, uint8 input).
    func litert(_ files: [String]) throws -> [[String: Any]] {
        let r = try runProcess(TestEnv.python, [Self.script, "images", Self.model, Self.labels] + files, timeout: 300)
        guard r.status == 0 else {
            if r.stderrText.contains("No module named 'ai_edge_litert'") {
                FileHandle.standardError.write(Data("WARNING: ai-edge-litert missing from the venv: LiteRT comparison SKIPPED\n".utf8))
                return []
            }
            throw TestFailure("litert_reference.py: \(r.stderrText)")
        }
        return try r.lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    func framepipeLabels(_ r: ProcessResult) throws -> [[[String: Any]]] {
        #expect(r.status == 0, "\(r.stderrText)")
        return try r.lines.map { (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])["labels"] as! [[String: Any]] }
    }

    /// |p_framepipe - p_litert| of framepipe's top-1 class.
    func probabilityGap(_ ours: [[String: Any]], _ ref: [String: Any]) -> Double {
        let index = ours[0]["index"] as! Int
        let p = (ref["probs"] as! [String: Double])[String(index)] ?? 0
        return abs((ours[0]["score"] as! Double) - p)
    }

    @Test func sameTop1AsLiteRTOnEveryImage() throws {
        let ref = try litert(Self.images)
        guard !ref.isEmpty else { return }
        let ours = try framepipeLabels(try framepipe(["check", "--model", Self.model] + Self.images))
        #expect(ours.count == Self.images.count && ref.count == Self.images.count)
        var gaps: [Double] = []
        for (o, r) in zip(ours, ref) {
            #expect(o[0]["index"] as? Int == r["top1"] as? Int, "\(r["input"]!): framepipe \(o[0]["label"]!) vs LiteRT \(r["label"]!)")
            gaps.append(probabilityGap(o, r))
        }
        FileHandle.standardError.write(Data("note: images, |p_top1 framepipe - LiteRT|: max \(gaps.max()!), per image \(gaps.map { (($0 * 1000).rounded() / 1000) })\n".utf8))
        #expect(gaps.max()! < 0.1)
    }

    @Test func sameTop1AsLiteRTOnTheSlideshowFrames() throws {
        let video = TestEnv.asset("videos/slideshow_dev.mp4")
        let ref = try litert([video])
        guard !ref.isEmpty else { return }
        let ours = try framepipeLabels(try framepipe(["run", "--quiet", "--model", Self.model, video]))
        #expect(ours.count == 200 && ref.count == 200)
        let agree = zip(ours, ref).filter { $0.0[0]["index"] as? Int == $0.1["top1"] as? Int }.count
        let gaps = zip(ours, ref).map { probabilityGap($0.0, $0.1) }.sorted()
        FileHandle.standardError.write(Data(("note: slideshow, top-1 agreement with LiteRT \(agree)/\(ours.count); "
            + "|p_top1 framepipe - LiteRT| median \(gaps[gaps.count / 2]), max \(gaps.last!)\n").utf8))
        #expect(agree * 100 >= 97 * ours.count)
    }

    /// The TFLite import and the ONNX made from the same file, fed the same preprocessing.
    @Test func sameTop1AsTheSharedONNXEverywhere() throws {
        let onnx = TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx")
        let same = ["--mean", "128,128,128", "--std", "128,128,128", "--labels", Self.labels]
        let video = TestEnv.asset("videos/slideshow_dev.mp4")
        for inputs in [Self.images, [video, TestEnv.asset("videos/bigbuckbunny.mp4")]] {
            let command = inputs == Self.images ? "check" : "run"
            let quiet = command == "run" ? ["--quiet"] : []
            let a = try framepipeLabels(try framepipe([command] + quiet + ["--model", Self.model] + same + inputs))
            let b = try framepipeLabels(try framepipe([command] + quiet + ["--model", onnx] + same + inputs))
            #expect(a.count == b.count && !a.isEmpty)
            let differ = zip(a, b).filter { $0.0[0]["index"] as? Int != $0.1[0]["index"] as? Int }.count
            #expect(differ == 0, "\(command): \(differ) of \(a.count) top-1 labels differ")
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
