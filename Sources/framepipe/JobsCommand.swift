import ArgumentParser
import Foundation
import Queue

/// `framepipe jobs --db URL`: the queue's jobs per state and per worker.
struct JobsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs",
        abstract: "Show the PostgreSQL job queue: jobs per state (pending, running, done, failed) and per worker.",
        discussion: """
        'running' counts jobs a worker holds now; 'expired' those whose lease ran out (their worker \
        is gone: the next claim takes them). Per worker, 'done' counts the jobs it committed and \
        'failed'/'pending' the ones it tried last. --json prints one object instead.
        """)

    @Option(name: .long, help: ArgumentHelp("postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (default: $FRAMEPIPE_DB).", valueName: "url"))
    var db: String?

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func validate() throws { _ = try QueueCLI.url(db) }

    func run() throws {
        let url = try QueueCLI.url(db)
        let database = Database(url: url, log: QueueCLI.log)
        defer { database.close() }
        let st: QueueStatus
        do {
            try Schema.migrate(database)
            st = try JobQueue(db: database).status()
        } catch {
            throw Failure(.cannotStart, "\(error)")
        }
        let states = ["pending", "running", "done", "failed"]
        if json {
            var o: [String: Any] = ["frames": st.frames, "expired_leases": st.expiredLeases]
            for s in states { o[s] = st.count(s) }
            o["workers"] = st.workers.mapValues { w in Dictionary(uniqueKeysWithValues: states.map { ($0, w[$0] ?? 0) }) }
            let data = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
            try StdoutText.line(String(decoding: data, as: UTF8.self))
            return
        }
        var out = "\(url)\n"
        out += "pending \(st.count("pending"))\n"
        out += "running \(st.count("running"))" + (st.expiredLeases > 0 ? " (\(st.expiredLeases) expired: claimable again)" : "") + "\n"
        out += "done    \(st.count("done")) (\(st.frames) frames)\n"
        out += "failed  \(st.count("failed"))\n"
        if !st.workers.isEmpty {
            let width = max(6, st.workers.keys.map(\.count).max() ?? 0)
            func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(0, n - s.count)) }
            out += "\n" + pad("worker", width) + "  running  done  failed  pending\n"
            for w in st.workers.keys.sorted() {
                let c = st.workers[w]!
                out += pad(w, width) + "  " + pad(String(c["running"] ?? 0), 7) + "  " + pad(String(c["done"] ?? 0), 4)
                    + "  " + pad(String(c["failed"] ?? 0), 6) + "  " + String(c["pending"] ?? 0) + "\n"
            }
        }
        try StdoutText.write(out)
    }
}
