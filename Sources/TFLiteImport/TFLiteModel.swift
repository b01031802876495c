// Public entry points of the TFLite importer.
import Foundation
import Inference

/// Loads TFLite flatbuffer models (`.tflite`, schema v3) into the same graph IR and runtime as
/// ONNX and Keras models. Quantized (uint8/int8) weights are dequantized to float32.
///
/// Labels and preprocessing are not read from the file: they live in the model's sidecar JSON
/// (`ModelSidecar`). A final SOFTMAX is dropped, so the class output (`logits`) carries real
/// logits; apply `Labels.softmax` for probabilities.
public enum TFLiteModel {
    /// Files larger than this are refused before they are read (TFLite's flatbuffer limit is 2 GiB).
    public static let maxFileSize = 1 << 31

    /// True when `bytes` carry TFLite's file identifier `TFL3` at offset 4.
    public static func hasIdentifier(_ bytes: [UInt8]) -> Bool { TFLiteFile.hasIdentifier(bytes) }

    /// Loads the `.tflite` file at `path`, then verifies and optimises it (`Model(graph:source:)`).
    /// Throws `InferenceError` naming the file, and the tensor and operator when one is at fault.
    public static func load(path: String) throws -> Model {
        try Model(graph: importGraph(path: path), source: path)
    }

    /// Reads the file at `path` and returns its graph (before `Model`'s passes).
    public static func importGraph(path: String) throws -> Graph {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        if let size = attributes?[.size] as? Int, size > maxFileSize {
            throw InferenceError(source: path, reason: "file of \(size) bytes is larger than a TFLite model can be (2 GiB)")
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw InferenceError(source: path, reason: "cannot read the model file (\(error.localizedDescription))")
        }
        return try importGraph(bytes: [UInt8](data), source: path)
    }

    /// Converts the bytes of a `.tflite` file; `source` names it in errors.
    public static func importGraph(bytes: [UInt8], source: String) throws -> Graph {
        try TFLiteImporter.importGraph(bytes: bytes, source: source)
    }

    /// The pixel normalisation a quantized model's input implies, for 0...255 RGB pixels fed as its
    /// integers: uint8 `q = pixel` gives real = scale * (pixel - zero_point), i.e. mean = zero_point and
    /// std = 1 / scale; int8 `q = pixel - 128` gives mean = zero_point + 128. Nil for a float input,
    /// or when the file cannot be read (loading it reports that).
    public static func inputNormalisation(path: String) -> (mean: Float, std: Float)? {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: path)),
              let file = try? TFLiteFile(bytes: [UInt8](data)), file.inputs.count == 1,
              file.inputs[0] >= 0, file.inputs[0] < file.tensors.count else { return nil }
        let input = file.tensors[file.inputs[0]]
        guard let q = input.quantization, q.scale.count == 1, q.scale[0] > 0, q.scale[0].isFinite else { return nil }
        let zero = Float(q.zeroPoint.first ?? 0)
        switch input.type {
        case .uint8: return (zero, 1 / q.scale[0])
        case .int8: return (zero + 128, 1 / q.scale[0])
        default: return nil
        }
    }
}
