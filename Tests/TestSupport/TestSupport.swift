import Foundation

/// Paths and helpers shared by every test target.
public enum TestEnv {
    /// The package root (the folder holding Package.swift).
    public static let packageRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
                return url
            }
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
    }()

    /// `FRAMEPIPE_ASSETS`, or `../shared/assets` beside the package root.
    public static let assets: URL = {
        if let env = ProcessInfo.processInfo.environment["FRAMEPIPE_ASSETS"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        return packageRoot.deletingLastPathComponent().appendingPathComponent("shared/assets")
    }()

    /// True when the shared assets are present; tests that need them are skipped (and say so) otherwise.
    public static var hasAssets: Bool {
        let ok = FileManager.default.fileExists(atPath: assets.appendingPathComponent("README.md").path)
        if !ok { warnOnce("shared assets not found at \(assets.path): tests that need them are SKIPPED") }
        return ok
    }

    /// A file under the assets folder.
    public static func asset(_ relative: String) -> String {
        assets.appendingPathComponent(relative).path
    }

    /// The Python interpreter of the test venv made by scripts/setup (`FRAMEPIPE_PYTHON` overrides).
    public static let python: String = {
        if let env = ProcessInfo.processInfo.environment["FRAMEPIPE_PYTHON"], !env.isEmpty { return env }
        return packageRoot.appendingPathComponent(".venv/bin/python").path
    }()

    /// True when the venv's python exists.
    public static var hasPython: Bool {
        let ok = FileManager.default.isExecutableFile(atPath: python)
        if !ok { warnOnce("python venv not found at \(python) (run scripts/setup): tests that need it are SKIPPED") }
        return ok
    }

    /// The folder holding the built products (the test bundle sits beside the `framepipe` binary).
    public static let productsDirectory: URL = {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        // On Linux the runner is `<products>/framepipePackageTests.xctest`; on macOS it is inside a bundle.
        while dir.path != "/" {
            if FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("framepipe").path) { return dir }
            dir.deleteLastPathComponent()
        }
        return exe.deletingLastPathComponent()
    }()

    /// The built `framepipe` executable.
    public static var framepipe: String { productsDirectory.appendingPathComponent("framepipe").path }

    /// A fresh temporary directory, removed by the caller (or left in /tmp for inspection on failure).
    public static func tempDir(_ label: String = "framepipe-test") throws -> URL {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(label)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    nonisolated(unsafe) private static var warned = Set<String>()
    private static let warnLock = NSLock()
    private static func warnOnce(_ message: String) {
        warnLock.lock(); defer { warnLock.unlock() }
        if warned.insert(message).inserted {
            FileHandle.standardError.write(Data("WARNING: \(message)\n".utf8))
        }
    }
}

/// The result of running a child process to completion.
public struct ProcessResult: Sendable {
    public var status: Int32
    /// True when the process ended by a signal (then `status` is the signal number).
    public var signaled: Bool
    public var stdout: Data
    public var stderr: Data
    public var timedOut: Bool
    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    /// Non-empty stdout lines.
    public var lines: [String] { stdoutText.split(separator: "\n").map(String.init) }
}

/// Runs `executable` with `arguments`, feeding `stdin` and collecting both outputs; kills it after `timeout` seconds.
@discardableResult
public func runProcess(_ executable: String, _ arguments: [String], stdin: Data? = nil,
                       environment: [String: String]? = nil, currentDirectory: String? = nil,
                       timeout: TimeInterval = 300) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    }
    if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
    let outPipe = Pipe(), errPipe = Pipe(), inPipe = Pipe()
    process.standardOutput = outPipe
    process.standardError = errPipe
    process.standardInput = stdin == nil ? FileHandle.nullDevice : inPipe
    try process.run()

    let group = DispatchGroup()
    nonisolated(unsafe) var out = Data(), err = Data()
    group.enter()
    DispatchQueue.global().async { out = outPipe.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    group.enter()
    DispatchQueue.global().async { err = errPipe.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    if let stdin {
        DispatchQueue.global().async {
            try? inPipe.fileHandleForWriting.write(contentsOf: stdin)
            try? inPipe.fileHandleForWriting.close()
        }
    }
    var timedOut = false
    if group.wait(timeout: .now() + timeout) == .timedOut {
        timedOut = true
        process.terminate()
        kill(process.processIdentifier, SIGKILL)
        _ = group.wait(timeout: .now() + 10)
    }
    process.waitUntilExit()
    return ProcessResult(status: process.terminationStatus,
                         signaled: process.terminationReason == .uncaughtSignal,
                         stdout: out, stderr: err, timedOut: timedOut)
}

/// Runs the built `framepipe` binary.
@discardableResult
public func framepipe(_ arguments: [String], stdin: Data? = nil, environment: [String: String]? = nil,
                      timeout: TimeInterval = 300) throws -> ProcessResult {
    try runProcess(TestEnv.framepipe, arguments, stdin: stdin, environment: environment, timeout: timeout)
}

/// Runs a shell command line with bash (for ffmpeg/ffprobe fixtures and python one-offs).
@discardableResult
public func shell(_ command: String, timeout: TimeInterval = 300) throws -> ProcessResult {
    try runProcess("/bin/bash", ["-c", command], timeout: timeout)
}
