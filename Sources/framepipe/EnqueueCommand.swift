import ArgumentParser
import Foundation
import Logging
import Queue

/// `framepipe enqueue --db URL INPUT...`: adds jobs to the PostgreSQL queue that `serve` workers
/// with a `[queue]` section take (README, "Scale-out through PostgreSQL").
struct EnqueueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enqueue",
        abstract: "Add inputs to the PostgreSQL job queue that 'serve' workers with a [queue] section process.",
        discussion: """
        Each INPUT becomes one job; prints 'ID<TAB>INPUT' per job. Paths are made absolute and must \
        exist here (use storage every worker sees at the same path); URLs (scheme://...) are queued \
        as given. A missing path is reported and skipped, the others are queued (exit status 1). \
        Creates or migrates the queue's tables when needed.
        """)

    @Option(name: .long, help: ArgumentHelp("postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (default: $FRAMEPIPE_DB).", valueName: "url"))
    var db: String?

    @Argument(help: "Video files or URLs.")
    var inputs: [String] = []

    func validate() throws {
        if inputs.isEmpty { throw Failure.usage("no input given (framepipe enqueue --db URL INPUT...)") }
        if inputs.contains("") { throw Failure.usage("an input is an empty string") }
        if inputs.contains("-") { throw Failure.usage("stdin ('-') cannot be queued: a worker elsewhere cannot read it") }
        _ = try QueueCLI.url(db)
    }

    func run() throws {
        let url = try QueueCLI.url(db)
        var accepted: [String] = []
        var failed = 0
        let cwd = FileManager.default.currentDirectoryPath
        for input in inputs {
            if input.contains("://") { accepted.append(input); continue }
            let path = input.hasPrefix("/") ? input : (cwd as NSString).appendingPathComponent(input)
            let standard = (path as NSString).standardizingPath
            var isDir: ObjCBool = false
            if !FileManager.default.fileExists(atPath: standard, isDirectory: &isDir) {
                Report.line("\(input): no such file; not queued")
                failed += 1
            } else if isDir.boolValue {
                Report.line("\(input): is a folder, not a video; not queued")
                failed += 1
            } else {
                accepted.append(standard)
            }
        }
        if !accepted.isEmpty {
            let database = Database(url: url, log: QueueCLI.log)
            defer { database.close() }
            let ids: [Int64]
            do {
                try Schema.migrate(database)
                ids = try JobQueue(db: database).enqueue(accepted)
            } catch {
                throw Failure(.cannotStart, "\(error)")
            }
            var out = ""
            for (id, input) in zip(ids, accepted) { out += "\(id)\t\(input)\n" }
            try StdoutText.write(out)
        }
        if failed > 0 { throw ExitCode(ExitStatus.inputFailed.rawValue) }
    }
}

/// What `enqueue` and `jobs` share: the database URL and a quiet logger.
enum QueueCLI {
    static let log = Logger(label: "framepipe.queue") { _ in SwiftLogNoOpLogHandler() }

    /// `--db`, else `$FRAMEPIPE_DB`; a usage error when neither is set or the URL is malformed.
    static func url(_ flag: String?) throws -> DatabaseURL {
        guard let text = flag ?? ProcessInfo.processInfo.environment["FRAMEPIPE_DB"], !text.isEmpty else {
            throw Failure.usage("--db URL is required (or set FRAMEPIPE_DB), like postgres://framepipe@db.example/framepipe")
        }
        do { return try DatabaseURL(text) } catch { throw Failure.usage("--db: \(error)") }
    }
}
