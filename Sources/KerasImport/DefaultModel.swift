import Foundation

/// Where framepipe finds its default model (installed by scripts/fetch-default-model).
///
/// Search order:
/// 1. `$FRAMEPIPE_MODEL` (any model file: .onnx or Keras .h5);
/// 2. `$XDG_DATA_HOME/framepipe/models/default.h5` (XDG_DATA_HOME defaults to `~/.local/share`);
/// 3. `/usr/local/share/framepipe/models/default.h5`.
public enum DefaultModel {
    /// The candidate paths in search order, for `environment` (the process environment by default).
    public static func searchPaths(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        var paths: [String] = []
        if let explicit = environment["FRAMEPIPE_MODEL"], !explicit.isEmpty { paths.append(explicit) }
        let dataHome: String
        if let xdg = environment["XDG_DATA_HOME"], xdg.hasPrefix("/") {  // XDG: relative values are ignored
            dataHome = xdg
        } else {
            let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
            dataHome = (home as NSString).appendingPathComponent(".local/share")
        }
        paths.append((dataHome as NSString).appendingPathComponent("framepipe/models/default.h5"))
        paths.append("/usr/local/share/framepipe/models/default.h5")
        return paths
    }

    /// The model to use when none is given: `$FRAMEPIPE_MODEL` whenever it is set (even if the file
    /// is missing, so that loading it reports the user's mistake instead of silently using another
    /// model), else the first existing readable default file; nil when there is none (then the user
    /// must pass --model, or run scripts/fetch-default-model).
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let explicit = environment["FRAMEPIPE_MODEL"], !explicit.isEmpty { return explicit }
        return searchPaths(environment: environment).first { FileManager.default.isReadableFile(atPath: $0) }
    }

    /// Convenience without arguments, as the CLI calls it.
    public static func searchPaths() -> [String] { searchPaths(environment: ProcessInfo.processInfo.environment) }
    /// Convenience without arguments, as the CLI calls it.
    public static func locate() -> String? { locate(environment: ProcessInfo.processInfo.environment) }
}
