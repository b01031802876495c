import Foundation
import KerasImport
import Pipeline
#if canImport(Glibc)
import Glibc
#endif

/// What `framepipe serve --check-config` checks beyond the config's syntax: that the model the
/// service will use exists, is readable by the service's user and loads and compiles, and that
/// `drain_timeout` stays below the unit's `TimeoutStopSec` (systemd kills the service after it).
public enum ConfigCheck {
    /// The systemd unit a config belongs to, where it was found and its settings that matter here.
    public struct Unit: Sendable {
        /// The unit file read, with its drop-ins.
        public var path: String
        public var dropIns: [String] = []
        /// "installed" (a systemd unit folder) or "shipped" (the copy beside the binary or in the
        /// checkout), or "given" (`--unit`).
        public var origin: String
        /// Seconds (nil: infinity).
        public var timeoutStopSec: Double? = 90
        public var dynamicUser = false
        public var user: String?
        public var protectHome = false
        public var privateTmp = false
        public var stateDirectories: [String] = []
        /// `Environment=` assignments (later ones win; an empty `Environment=` clears them).
        public var environment: [String: String] = [:]

        /// True when the service runs as a user other than root.
        public var runsUnprivileged: Bool { dynamicUser || (user != nil && user != "root" && user != "0") }
    }

    /// The unit name for a config path: `framepipe.toml` → `framepipe.service`, `/etc/framepipe/NAME.toml`
    /// → `framepipe@NAME.service` (template `framepipe@.service`).
    public static func unitNames(forConfig path: String) -> [String] {
        let base = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        if base == "framepipe" || base.isEmpty { return ["framepipe.service"] }
        return ["framepipe@\(base).service", "framepipe@.service"]
    }

    static let unitFolders = ["/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
                              "/lib/systemd/system", "/usr/lib/systemd/system"]

    /// Finds the unit for `configPath`: `explicit` when given, else the installed unit (systemd's
    /// folders, highest priority first), else the shipped copy (`/usr/local/share/framepipe/systemd`
    /// or the checkout's `systemd/` beside the binary). Nil when there is none.
    public static func findUnit(forConfig configPath: String, explicit: String?) throws -> Unit? {
        if let explicit {
            guard FileManager.default.isReadableFile(atPath: explicit) else {
                throw ServiceError("\(explicit): cannot read the unit file")
            }
            return try parseUnit(explicit, origin: "given", name: (explicit as NSString).lastPathComponent)
        }
        let names = unitNames(forConfig: configPath)
        for name in names {
            for dir in unitFolders where FileManager.default.isReadableFile(atPath: dir + "/" + name) {
                return try parseUnit(dir + "/" + name, origin: "installed", name: names[0])
            }
        }
        var shipped = ["/usr/local/share/framepipe/systemd"]
        if let checkout = checkoutFolder("systemd") { shipped.append(checkout) }
        for dir in shipped {
            let file = dir + "/" + names.last!
            if FileManager.default.isReadableFile(atPath: file) {
                return try parseUnit(file, origin: "shipped, not installed", name: nil)
            }
        }
        return nil
    }

    /// `NAME/` of the checkout holding the running binary (`.build/<config>/framepipe`).
    static func checkoutFolder(_ name: String) -> String? {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        for _ in 0..<5 {
            let candidate = dir.appendingPathComponent(name).path
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path),
               FileManager.default.fileExists(atPath: candidate) {
                return candidate
            }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }

    /// Reads the `[Service]` settings we check from a unit file and its drop-ins
    /// (`<folder>/<name>.d/*.conf`, in name order, later ones win).
    static func parseUnit(_ path: String, origin: String, name: String?) throws -> Unit {
        var unit = Unit(path: path, origin: origin)
        var files = [path]
        if let name {
            let template = name.replacingOccurrences(of: #"@[^.]+\.service$"#, with: "@.service", options: .regularExpression)
            for dir in unitFolders {
                for n in Set([name, template]).sorted() {
                    let d = dir + "/" + n + ".d"
                    let confs = ((try? FileManager.default.contentsOfDirectory(atPath: d)) ?? []).filter { $0.hasSuffix(".conf") }.sorted()
                    files += confs.map { d + "/" + $0 }
                    unit.dropIns += confs.map { d + "/" + $0 }
                }
            }
        }
        for file in files {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ServiceError("\(file): cannot read the unit file")
            }
            var section = ""
            for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
                let line = raw.trimmingCharacters(in: .whitespaces)
                if line.hasPrefix("#") || line.hasPrefix(";") || line.isEmpty { continue }
                if line.hasPrefix("[") { section = line; continue }
                guard section == "[Service]", let eq = line.firstIndex(of: "=") else { continue }
                let key = line[..<eq].trimmingCharacters(in: .whitespaces)
                let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
                switch key {
                case "TimeoutStopSec", "TimeoutSec":
                    if value.isEmpty { unit.timeoutStopSec = 90; continue }
                    guard let v = timespan(value) else {
                        throw ServiceError("\(file): \(key)=\(value) is not a time span systemd understands")
                    }
                    unit.timeoutStopSec = v
                case "Environment":
                    if value.isEmpty { unit.environment = [:]; continue }
                    for a in assignments(value) {
                        guard let eq = a.firstIndex(of: "=") else { continue }
                        unit.environment[String(a[..<eq])] = String(a[a.index(after: eq)...])
                    }
                case "DynamicUser": unit.dynamicUser = ["yes", "true", "1", "on"].contains(value.lowercased())
                case "User": unit.user = value.isEmpty ? nil : value
                case "ProtectHome": unit.protectHome = !["no", "false", "0", "off", ""].contains(value.lowercased())
                case "PrivateTmp": unit.privateTmp = ["yes", "true", "1", "on"].contains(value.lowercased())
                case "StateDirectory":
                    if value.isEmpty { unit.stateDirectories = [] } else {
                        unit.stateDirectories += value.split(separator: " ").map { "/var/lib/" + $0.split(separator: ":")[0] }
                    }
                default: break
                }
            }
        }
        return unit
    }

    /// The words of an `Environment=` value: space-separated, each optionally in double quotes.
    static func assignments(_ value: String) -> [String] {
        var out: [String] = []
        var word = ""
        var quoted = false
        var started = false
        for c in value {
            if c == "\"" { quoted.toggle(); started = true; continue }
            if c == " " && !quoted {
                if started { out.append(word) }
                word = ""; started = false
                continue
            }
            word.append(c); started = true
        }
        if started { out.append(word) }
        return out
    }

    /// A systemd time span in seconds (`30`, `30s`, `1min 30s`, `500ms`, `2h`); nil for
    /// `infinity` is returned as `.infinity`; nil when unparsable.
    static func timespan(_ text: String) -> Double? {
        let t = text.lowercased().trimmingCharacters(in: .whitespaces)
        if t == "infinity" { return .infinity }
        let units: [(String, Double)] = [("usec", 1e-6), ("us", 1e-6), ("msec", 1e-3), ("ms", 1e-3),
                                         ("seconds", 1), ("second", 1), ("sec", 1), ("s", 1),
                                         ("minutes", 60), ("minute", 60), ("min", 60), ("m", 60),
                                         ("hours", 3600), ("hour", 3600), ("hr", 3600), ("h", 3600),
                                         ("days", 86400), ("day", 86400), ("d", 86400)]
        var total = 0.0
        var rest = Substring(t)
        var any = false
        while true {
            rest = rest.drop { $0 == " " }
            if rest.isEmpty { break }
            let num = rest.prefix { $0.isNumber || $0 == "." }
            guard !num.isEmpty, let v = Double(num) else { return nil }
            rest = rest.dropFirst(num.count).drop { $0 == " " }
            let word = rest.prefix { $0.isLetter }
            var factor = 1.0
            if !word.isEmpty {
                guard let u = units.first(where: { $0.0 == word }) else { return nil }
                factor = u.1
                rest = rest.dropFirst(word.count)
            }
            total += v * factor
            any = true
        }
        return any ? total : nil
    }

    /// The model file the service will load for `model`: `model.path`, else `$FRAMEPIPE_MODEL`,
    /// else the installed default model. The error says what to set in the config (serve has no
    /// `--model` flag) and where the default model was looked for.
    ///
    /// With `serviceEnvironment` (for `--check-config` of a unit that runs as a non-root user), the
    /// default model is looked up as the service will: `$HOME` is `/` there and `$FRAMEPIPE_MODEL`
    /// and `$XDG_DATA_HOME` are unset, so the caller's own `~/.local/share` does not count.
    public static func resolveModel(_ model: ModelConfig, configPath: String?,
                                    serviceEnvironment: [String: String]? = nil) throws -> String {
        if let p = model.path, !p.isEmpty { return p }
        do {
            if let env = serviceEnvironment {
                if let found = DefaultModel.locate(environment: env) { return found }
                throw ServiceError("no default model")
            }
            return try LoadedModel.resolvePath(nil)
        } catch {
            let looked = DefaultModel.searchPaths(environment: serviceEnvironment ?? ProcessInfo.processInfo.environment)
                .joined(separator: ", ")
            throw ServiceError("""
                no model: set `model.path` in \(configPath ?? "the configuration") to an ONNX, Keras H5 or TFLite file \
                the service can read, or install the default model with scripts/install (into \
                /usr/local/share/framepipe/models); looked in: \(looked)
                """)
        }
    }

    /// Checks that the service's user can read `file`: it exists and is a regular file, and when
    /// the unit runs as a non-root user (`DynamicUser=`, `User=`), its mode lets others read it and
    /// every folder above it lets others pass, and it is not hidden by `ProtectHome=`/`PrivateTmp=`.
    /// Files under the unit's `StateDirectory=` are exempt (systemd gives them to the service's user).
    public static func checkReadable(_ file: String, what: String, unit: Unit?) throws {
        var st = stat()
        guard stat(file, &st) == 0 else {
            throw ServiceError("\(what) \(file): \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw ServiceError("\(what) \(file): not a regular file") }
        guard let unit else {
            guard access(file, R_OK) == 0 else { throw ServiceError("\(what) \(file): not readable") }
            return
        }
        let absolute = URL(fileURLWithPath: file).resolvingSymlinksInPath().path
        if unit.protectHome, ["/home/", "/root/", "/run/user/"].contains(where: { absolute.hasPrefix($0) }) {
            throw ServiceError("\(what) \(absolute): hidden from the service by ProtectHome= in \(unit.path); put it under /usr/local/share/framepipe/models (scripts/install does)")
        }
        if unit.privateTmp, ["/tmp/", "/var/tmp/"].contains(where: { absolute.hasPrefix($0) }) {
            throw ServiceError("\(what) \(absolute): the service has its own /tmp (PrivateTmp= in \(unit.path)) and cannot see it")
        }
        if !unit.runsUnprivileged { return }
        let state = unit.stateDirectories.flatMap { [$0, $0.replacingOccurrences(of: "/var/lib/", with: "/var/lib/private/")] }
        if state.contains(where: { absolute.hasPrefix($0 + "/") }) { return }
        let who = unit.dynamicUser ? "the service's dynamic user" : "user \(unit.user!)"
        if st.st_mode & S_IROTH == 0 {
            throw ServiceError("\(what) \(absolute): not readable by \(who) (mode \(String(st.st_mode & 0o777, radix: 8)); `chmod o+r` it)")
        }
        var dir = URL(fileURLWithPath: absolute).deletingLastPathComponent()
        while dir.path != "/" {
            var ds = stat()
            if stat(dir.path, &ds) == 0, ds.st_mode & S_IXOTH == 0 {
                throw ServiceError("\(what) \(absolute): folder \(dir.path) does not let \(who) pass (mode \(String(ds.st_mode & 0o777, radix: 8)); `chmod o+x` it)")
            }
            dir = dir.deletingLastPathComponent()
        }
    }
}
