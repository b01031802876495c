import Foundation

/// The JSON file beside a model (`default.h5` → `default.json`) that says how to feed it and how
/// to read its outputs: input size, preprocessing, output names and labels. Written by
/// scripts/fetch-default-model for the default model; any model may have one.
///
/// ```json
/// { "input": {"width": 160, "height": 160},
///   "preprocess": {"resize": "stretch", "mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5]},
///   "embedding": "global_average_pooling2d", "logits": "dense", "labels": ["Chihuahua", ...] }
/// ```
public struct ModelSidecar: Codable, Sendable, Equatable {
    /// The model's input image size.
    public struct Input: Codable, Sendable, Equatable {
        public var width: Int
        public var height: Int
    }
    /// Pixel preprocessing: `(pixel - mean) / std` per RGB channel on 0...255 values, after resizing.
    public struct Preprocess: Codable, Sendable, Equatable {
        /// Resize mode name as Media's `ResizeMode` spells it (`stretch`, `center-crop`, `letterbox`).
        public var resize: String
        public var mean: [Float]
        public var std: [Float]
    }

    /// A human-readable model name.
    public var name: String?
    /// Where the model came from.
    public var source: String?
    /// SHA-256 of the model file, when known.
    public var sha256: String?
    public var input: Input
    public var preprocess: Preprocess
    /// Name of the graph output holding the embedding (the pooled feature vector).
    public var embedding: String?
    /// Name of the graph output holding the raw logits.
    public var logits: String?
    /// Class labels in logit order.
    public var labels: [String]

    /// The sidecar path for a model path: same name, extension `.json`.
    public static func path(forModel modelPath: String) -> String {
        ((modelPath as NSString).deletingPathExtension as NSString).appendingPathExtension("json")!
    }

    /// Reads the sidecar of `modelPath`; nil when there is none, throws when it exists but is malformed.
    public static func load(forModel modelPath: String) throws -> ModelSidecar? {
        let path = path(forModel: modelPath)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            return try JSONDecoder().decode(ModelSidecar.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw KerasImportError(path: path, reason: "malformed model sidecar JSON (\(error))")
        }
    }
}
