import Foundation

/// Where framepipe finds its default model: the ImageNet MobileNetV2 that ships in the repository's
/// `models/` folder (`mobilenet_v2_1.0_224_quant.tflite`, with its sidecar and labels).
///
/// Lookup order (the first two are handled by `LoadedModel.resolvePath(_:)`):
/// 1. `--model PATH`, or the service config's `model.path`;
/// 2. `$FRAMEPIPE_MODEL` (any model file);
/// 3. `$XDG_DATA_HOME/framepipe/models/` (XDG_DATA_HOME defaults to `~/.local/share`);
/// 4. `/usr/local/share/framepipe/models/` (what scripts/setup installs; readable by the hardened
///    service, which sees neither the invoking user's home nor the checkout);
/// 5. `models/` of the checkout the binary was built in, found from the executable's real path
///    (`.build/<configuration>/framepipe` → `../../models`, or an ancestor holding `Package.swift`).
public enum DefaultModel {
    /// The default model's file name in each folder searched.
    public static let fileName = "mobilenet_v2_1.0_224_quant.tflite"

    /// The folders searched for `fileName`, in order, for `environment`.
    public static func searchDirectories(environment: [String: String] = ProcessInfo.processInfo.environment,
                                         executable: String? = nil) -> [String] {
        let dataHome: String
        if let xdg = environment["XDG_DATA_HOME"], xdg.hasPrefix("/") {  // XDG: relative values are ignored
            dataHome = xdg
        } else {
            let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
            dataHome = (home as NSString).appendingPathComponent(".local/share")
        }
        var dirs = [(dataHome as NSString).appendingPathComponent("framepipe/models"),
                    "/usr/local/share/framepipe/models"]
        if let checkout = checkoutModels(executable: executable ?? executablePath()) { dirs.append(checkout) }
        var seen = Set<String>()
        return dirs.filter { seen.insert($0).inserted }
    }

    /// The candidate files in search order (FRAMEPIPE_MODEL first when set).
    public static func searchPaths(environment: [String: String] = ProcessInfo.processInfo.environment,
                                   executable: String? = nil) -> [String] {
        var paths: [String] = []
        if let explicit = environment["FRAMEPIPE_MODEL"], !explicit.isEmpty { paths.append(explicit) }
        paths += searchDirectories(environment: environment, executable: executable).map {
            ($0 as NSString).appendingPathComponent(fileName)
        }
        return paths
    }

    /// The model to use when none is given: `$FRAMEPIPE_MODEL` whenever it is set (even if the file
    /// is missing, so that loading it reports the user's mistake instead of silently using another
    /// model), else the first readable default model file; nil when there is none.
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment,
                              executable: String? = nil) -> String? {
        if let explicit = environment["FRAMEPIPE_MODEL"], !explicit.isEmpty { return explicit }
        return searchPaths(environment: environment, executable: executable).first {
            FileManager.default.isReadableFile(atPath: $0)
        }
    }

    /// The running executable, symlinks resolved (`/proc/self/exe` on Linux).
    static func executablePath() -> String {
        if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return resolved }
        return (CommandLine.arguments.first.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().path }) ?? ""
    }

    /// `models/` of the checkout holding `executable`: the nearest ancestor folder (up to 5 levels
    /// up) that has both `Package.swift` and `models/`.
    static func checkoutModels(executable: String) -> String? {
        guard !executable.isEmpty else { return nil }
        var dir = URL(fileURLWithPath: executable).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            let models = dir.appendingPathComponent("models")
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path),
               FileManager.default.fileExists(atPath: models.path) {
                return models.path
            }
            let parent = dir.deletingLastPathComponent()
            if parent.path == dir.path { break }
            dir = parent
        }
        return nil
    }
}
