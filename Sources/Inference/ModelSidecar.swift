import Foundation

/// A model's sidecar: `MODEL.json` beside the model file (`x.json` for `x.onnx` or `x.h5`), saying
/// how frames must be prepared for it and what its outputs mean. Every field is optional; flags
/// override it, and it overrides what the model itself implies. scripts/fetch-default-model writes one
/// for the default model.
///
/// ```json
/// {"name": "...", "width": 224, "height": 224, "mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5],
///  "resize": "stretch", "labels": ["background", "tench", ...] | "labels_file": "imagenet_labels.txt",
///  "embedding": "features", "logits": "logits"}
/// ```
public struct ModelSidecar: Codable, Sendable, Equatable {
    public var name: String?
    public var description: String?
    /// Where the model came from, and its SHA-256, when known.
    public var source: String?
    public var sha256: String?
    /// Input image size.
    public var width: Int?
    public var height: Int?
    /// `(pixel - mean) / std` per RGB channel on 0...255 values, after resizing.
    public var mean: [Float]?
    public var std: [Float]?
    /// Resize mode as framepipe spells it: `stretch`, `center-crop` or `letterbox`.
    public var resize: String?
    /// Class names in output order, inline or as a file (one per line, relative to the sidecar).
    public var labels: [String]?
    public var labelsFile: String?
    /// Names of the graph outputs holding the embedding and the raw logits (checked at load).
    public var embedding: String?
    public var logits: String?

    enum CodingKeys: String, CodingKey {
        case name, description, source, sha256, width, height, mean, std, resize, labels, embedding, logits
        case labelsFile = "labels_file"
    }

    public init() {}

    /// The sidecar path for a model path: same name, extension `.json`.
    public static func path(forModel modelPath: String) -> String {
        ((modelPath as NSString).deletingPathExtension as NSString).appendingPathExtension("json")!
    }

    /// Reads the sidecar of `modelPath`; nil when there is none, throws when it exists but is malformed.
    public static func load(forModel modelPath: String) throws -> ModelSidecar? {
        let path = path(forModel: modelPath)
        guard path != modelPath, FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            return try JSONDecoder().decode(ModelSidecar.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw InferenceError(source: path, reason: "malformed model sidecar JSON (\(error))")
        }
    }
}
