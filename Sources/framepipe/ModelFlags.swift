import ArgumentParser
import Foundation
import Inference
import Media
import Pipeline

/// Model, precision, threads and preprocessing flags, shared by `run` and `check`.
struct ModelFlags: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Model file (ONNX or Keras H5).",
        discussion: "Default: $FRAMEPIPE_MODEL, then the default model installed by scripts/setup."))
    var model: String?

    @Option(name: .long, help: "Precision: fp32, bf16 (needs a CPU with AVX512-BF16 or AMX) or int8 (needs a quantized QDQ model).")
    var precision: Precision = .fp32

    @Option(name: .long, help: "oneDNN threads (default: all cores).")
    var threads: Int?

    @Option(name: .long, help: "Input size S (square SxS); overrides the sidecar.")
    var size: Int?

    @Option(name: .long, help: "Per-channel mean on 0-255 values, 'R,G,B' or one value for all.")
    var mean: String?

    @Option(name: .long, help: "Per-channel std on 0-255 values, 'R,G,B' or one value for all.")
    var std: String?

    @Option(name: .long, help: "Resize mode: stretch, center-crop or letterbox.")
    var resize: ResizeMode?

    @Option(name: .long, help: "Labels file, one class name per line in output order.")
    var labels: String?

    func validate() throws {
        if let threads, threads < 1 { throw usageFailure("--threads must be >= 1 (got \(threads))") }
        if let size, size < 8 || size > 4096 { throw usageFailure("--size must be in 8...4096 (got \(size))") }
        _ = try parseTriple(mean, "mean")
        _ = try parseTriple(std, "std")
    }

    private func parseTriple(_ text: String?, _ name: String) throws -> [Float]? {
        guard let text else { return nil }
        let parts = text.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }), parts.count == 1 || parts.count == 3 else {
            throw usageFailure("--\(name) takes one number or three comma-separated numbers (got '\(text)')")
        }
        let v = parts.map { $0! }
        if name == "std", v.contains(where: { $0 <= 0 }) { throw usageFailure("--std values must be positive") }
        return v.count == 1 ? [v[0], v[0], v[0]] : v
    }

    /// The settings for `LoadedModel.load`.
    func settings(batchSize: Int) throws -> ModelSettings {
        var s = ModelSettings()
        s.modelPath = model
        s.precision = precision
        s.threads = threads
        s.batchSize = batchSize
        s.width = size
        s.height = size
        s.mean = try parseTriple(mean, "mean")
        s.std = try parseTriple(std, "std")
        s.resize = resize
        s.labelsPath = labels
        return s
    }
}

extension Precision: ExpressibleByArgument {}
extension ResizeMode: ExpressibleByArgument {}
