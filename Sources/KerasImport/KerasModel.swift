// Public entry points of the Keras importer.
import Foundation
import Inference

/// Loads Keras models saved in the H5 format (`model.save("model.h5")`, Keras 2 or 3) into the
/// same graph IR and runtime as ONNX models.
///
/// Labels and preprocessing are not read from the H5 file: they live in the model's sidecar JSON
/// (`ModelSidecar`). A final softmax is dropped so the logits output is raw, like an ONNX model's;
/// apply `Labels.softmax` for probabilities.
public enum KerasModel {
    /// The 8-byte HDF5 format signature (HDF5 spec, "Format Signature": `\x89HDF\r\n\x1a\n`).
    static let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]

    /// True when the file at `path` starts with the HDF5 signature. (HDF5 also allows a user block
    /// that moves the signature to offset 512, 1024, ...; those offsets are checked too.)
    public static func isHDF5(path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        var offset: UInt64 = 0
        while offset <= 1 << 20 {
            do {
                try handle.seek(toOffset: offset)
                guard let bytes = try handle.read(upToCount: signature.count), bytes.count == signature.count else {
                    return false
                }
                if Array(bytes) == signature { return true }
            } catch {
                return false
            }
            offset = offset == 0 ? 512 : offset * 2
        }
        return false
    }

    /// Loads the Keras H5 model at `path`: imports its graph, then verifies and optimises it like
    /// any model (`Model(graph:source:)`). Throws `KerasImportError` for problems with the file or a
    /// layer, `InferenceError` when the imported graph fails verification.
    public static func load(path: String) throws -> Model {
        try Model(graph: importGraph(path: path), source: path)
    }

    /// Reads the H5 file at `path` and returns its graph (before `Model`'s verification and
    /// optimisation passes). Throws `KerasImportError` naming the file, and the layer when one is
    /// unsupported or its weights do not fit.
    public static func importGraph(path: String) throws -> Graph {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw KerasImportError(path: path, reason: "no such readable file")
        }
        guard isHDF5(path: path) else {
            throw KerasImportError(path: path, reason: "not an HDF5 file (no HDF5 signature)")
        }
        do {
            let file = try HDF5File(readOnly: path)
            let root: HDF5Container = file
            guard try root.hasAttribute("model_config") else {
                throw KerasImportError(path: path, reason: "no model_config attribute: not a Keras model file "
                                       + "(a weights-only file from save_weights cannot be loaded alone)")
            }
            let config: KerasModelConfig
            do {
                config = try KerasModelConfig(json: try root.attribute("model_config").readString())
            } catch let error as ConfigError {
                throw KerasImportError(path: path, reason: error.description)
            }
            let weights = try KerasWeights(file: file)
            return try KerasImporter(path: path, weights: weights).importGraph(config)
        } catch let error as HDF5Error {
            throw KerasImportError(path: path, reason: error.description)
        }
    }
}
