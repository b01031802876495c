import ArgumentParser
import Foundation
import Inference
import Media
import Pipeline

/// Model, precision, threads and preprocessing flags, shared by `run` and `check`.
struct ModelFlags: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Model file (ONNX, Keras H5 or TFLite, told apart by content).",
        discussion: "Default: $FRAMEPIPE_MODEL, then the default model (see `framepipe models`)."))
    var model: String?

    @Option(name: .long, help: "Precision: fp32, bf16 (needs a CPU with AVX512-BF16 or AMX) or int8 (needs a quantized QDQ model).")
    var precision: Precision = .fp32

    @Option(name: .long, parsing: .unconditional, help: "oneDNN threads (default: all cores).")
    var threads: Int?

    @Option(name: .long, parsing: .unconditional, help: "Input size S (square SxS); overrides the sidecar.")
    var size: Int?

    @Option(name: .long, parsing: .unconditional, help: "Per-channel mean on 0-255 values, 'R,G,B' or one value for all.")
    var mean: String?

    @Option(name: .long, parsing: .unconditional, help: "Per-channel std on 0-255 values, 'R,G,B' or one value for all.")
    var std: String?

    @Option(name: .long, help: "Resize mode: stretch, center-crop or letterbox.")
    var resize: ResizeMode?

    @Option(name: .long, help: "Labels file, one class name per line in output order.")
    var labels: String?

    func validate() throws {
        _ = try settings(batchSize: ModelSettings().batchSize)
    }

    /// Loads, compiles and warms up the model. Any failure means the command cannot start (exit 78).
    func load(batchSize: Int) throws -> LoadedModel {
        let path = try ModelPath.resolve(model)
        if let labels { try ModelPath.checkFile(labels, what: "labels", kind: "a text file, one class name per line") }
        var s = try settings(batchSize: batchSize)
        s.modelPath = path
        do {
            return try LoadedModel.load(s)
        } catch {
            throw Failure.model(error, path: path)
        }
    }

    /// The settings for `LoadedModel.load`, checked by the rules the service config also uses
    /// (`ModelSettings.validate`); a bad value is a usage error naming the flag.
    func settings(batchSize: Int) throws -> ModelSettings {
        try FlagRules.usage {
            var s = ModelSettings()
            s.modelPath = model
            s.precision = precision
            s.threads = threads
            s.batchSize = batchSize
            s.width = size
            s.height = size
            if let mean { try s.setMean(ModelSettings.parseNumbers(mean, SettingRules.mean), given: mean) }
            if let std { try s.setStd(ModelSettings.parseNumbers(std, SettingRules.std), given: std) }
            s.resize = resize
            s.labelsPath = labels
            try s.validate()
            return s
        }
    }
}

extension Precision: ExpressibleByArgument {}
extension ResizeMode: ExpressibleByArgument {}

/// Finds the model file (`--model`, `$FRAMEPIPE_MODEL`, the installed default) and has the model
/// registry (`ModelFormat.detect`) classify it before any loader reads it: a folder, a device, a
/// FIFO (which would block), an empty, unreadable or unknown file is reported as such, and the
/// command cannot start (78).
enum ModelPath {
    static func resolve(_ explicit: String?) throws -> String {
        let path: String
        do {
            path = try LoadedModel.resolvePath(explicit)
        } catch {
            throw Failure(.cannotStart, "\(error)")
        }
        let fromEnv = (explicit ?? "").isEmpty && ProcessInfo.processInfo.environment["FRAMEPIPE_MODEL"] == path
        // The registry classifies the file (folder, device, FIFO, empty, unreadable, wrong format)
        // without blocking on it: its wording is the one every command and the service print.
        do {
            _ = try ModelFormat.detect(path: path)
        } catch {
            throw Failure(.cannotStart, subject: path, "\(error)" + (fromEnv ? " (from FRAMEPIPE_MODEL)" : ""))
        }
        return path
    }

    /// Throws `cannotStart` unless `path` is a readable, non-empty regular file.
    static func checkFile(_ path: String, what: String, kind: String, origin: String = "") throws {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw Failure(.cannotStart, subject: path, "cannot open the \(what)\(origin): \(String(cString: strerror(errno)))")
        }
        switch st.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw Failure(.cannotStart, subject: path, "is a folder, not a \(what) file\(origin)")
        default: throw Failure(.cannotStart, subject: path, "is not a regular file (a \(what) is \(kind))\(origin)")
        }
        guard access(path, R_OK) == 0 else {
            throw Failure(.cannotStart, subject: path, "cannot read the \(what)\(origin): \(String(cString: strerror(errno)))")
        }
        if st.st_size == 0 { throw Failure(.cannotStart, subject: path, "the \(what) file is empty\(origin)") }
    }
}
