import ArgumentParser
import Foundation
import Inference
import Pipeline

/// `framepipe models`: which model framepipe uses when none is named, where it was found (and
/// every place searched), its format, classes, input size and preprocessing.
struct ModelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "Show the default model: where it was found, the paths searched, classes, input size and preprocessing.",
        discussion: """
            Without --model, framepipe uses $FRAMEPIPE_MODEL, else the first \(DefaultModel.fileName) found in: \
            $XDG_DATA_HOME/framepipe/models (~/.local/share/framepipe/models), /usr/local/share/framepipe/models \
            (what scripts/setup installs), then models/ of the checkout the binary was built in. \
            The service's model.path, when set, comes before all of them.
            """)

    @Option(name: .long, help: "Describe this model file instead of the default one.")
    var model: String?
    @Flag(help: "Print one JSON object instead of text.") var json = false

    func run() async throws {
        let env = ProcessInfo.processInfo.environment
        let fromEnv = env["FRAMEPIPE_MODEL"].flatMap { $0.isEmpty ? nil : $0 }
        let candidates = DefaultModel.searchDirectories().map { ($0 as NSString).appendingPathComponent(DefaultModel.fileName) }
        var s = ModelSettings()
        s.modelPath = model
        let how: String
        if model != nil { how = "--model" } else if fromEnv != nil { how = "FRAMEPIPE_MODEL" } else { how = "default search" }
        let p = try LoadedModel.prepare(s)
        let format = try ModelFormat.detect(path: p.path)
        let m = p.model
        let pre = p.preprocess
        let found = candidates.map { (path: $0, present: FileManager.default.isReadableFile(atPath: $0)) }
        if json {
            let object: [String: Any] = [
                "model": p.path, "chosen_by": how, "framepipe_model": fromEnv as Any? ?? NSNull(),
                "searched": found.map { ["path": $0.path, "present": $0.present] as [String: Any] },
                "format": format.rawValue, "name": p.sidecar?.name as Any? ?? NSNull(),
                "input": ["width": pre.width, "height": pre.height, "resize": pre.mode.rawValue,
                          "mean": pre.mean.map(Double.init), "std": pre.std.map(Double.init)] as [String: Any],
                "classes": m.classCount, "labels": p.labels?.count ?? 0,
                "labels_source": p.provenance["labels"] as Any? ?? NSNull(),
                "embedding": m.embeddingOutput, "embedding_dim": m.embeddingDim,
                "logits": m.logitsOutput as Any? ?? NSNull(),
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("model: \(p.path)")
        print("chosen by: \(how)")
        print("searched (in order):")
        print("  --model: \(model ?? "not given")")
        print("  $FRAMEPIPE_MODEL: \(fromEnv ?? "not set")")
        for f in found { print("  \(f.path): \(f.present ? "present" : "absent")\(f.path == p.path ? " (used)" : "")") }
        print("format: \(format.rawValue)")
        if let name = p.sidecar?.name { print("name: \(name)") }
        print("input: \(pre.width)x\(pre.height) RGB, resize \(pre.mode.rawValue), mean \(pre.mean), std \(pre.std) "
              + "(\(p.provenance["mean"] ?? "default"))")
        print("classes: \(m.classCount)" + (p.labels.map { ", \($0.count) labels (\(p.provenance["labels"] ?? ""))" } ?? ", no labels"))
        if let labels = p.labels, !labels.isEmpty {
            print("  e.g. " + labels.prefix(4).enumerated().map { "\($0.offset): \($0.element)" }.joined(separator: ", ") + ", ...")
        }
        print("embedding: \(m.embeddingOutput) (\(m.embeddingDim) values); class output: \(m.logitsOutput ?? "none")")
    }
}
