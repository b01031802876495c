import Foundation
import Output

/// The `FrameSink` of a claimed job: every record goes to the job's local outbox file
/// (`ResultOutbox`); at a successful finish the file is sealed (fsynced, renamed) and `onSealed`
/// is called with its path, which commits the rows and the job's completion in one transaction
/// (`ResultCommitter`). An input that ends with an error, or is abandoned, leaves no sealed file:
/// the worker records the failure on the job instead, and no partial set of rows ever reaches the
/// database.
public final class ResultsSink: FrameSink {
    private let writer: OutboxWriter
    private let labels: Bool
    private let embedding: Bool
    private let onSealed: (String) -> Void
    private let started: UInt64

    /// - Parameters:
    ///   - emit: what each row carries (labels as jsonb, embedding as real[]).
    ///   - started: when the job was claimed (`DispatchTime` uptime nanoseconds): its `seconds` count from there.
    ///   - onSealed: called on the pipeline's output thread with the sealed file's path.
    public init(job: ClaimedJob, worker: String, outbox: ResultOutbox, emit: EmitOptions,
                started: UInt64 = DispatchTime.now().uptimeNanoseconds, onSealed: @escaping (String) -> Void) throws {
        self.started = started
        writer = try OutboxWriter(outbox: outbox, job: job, worker: worker)
        labels = emit.labels
        embedding = emit.embedding
        self.onSealed = onSealed
    }

    public func write(_ record: FrameRecord) throws {
        try writer.append(frame: record.frame, pts: record.pts, keyframe: record.keyframe,
                          labelsJSON: labels ? RecordEncoder.labelsJSON(record.labels) : nil,
                          embedding: embedding ? record.embedding : nil)
    }

    public func finish(error: String?) throws {
        if error != nil { writer.abandon(); return }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let path: String
        do { path = try writer.seal(seconds: seconds) } catch { writer.abandon(); throw error }
        onSealed(path)
    }

    public func abandon() { writer.abandon() }
}

/// Commits sealed outbox files to the database and removes them once it has them.
public final class ResultCommitter: @unchecked Sendable {
    public let queue: JobQueue
    public let outbox: ResultOutbox
    private let lock = NSLock()

    public init(queue: JobQueue, outbox: ResultOutbox) { self.queue = queue; self.outbox = outbox }

    /// What happened to one file.
    public enum Result: Equatable {
        case committed(job: Int64, frames: Int)
        /// Another worker had committed the job; this copy was dropped.
        case duplicate(job: Int64)
        /// The file could not be read; it was moved to `rejected/` (named here).
        case rejected(String, reason: String)
    }

    /// Offers one sealed file to the database. Throws (keeping the file) when the database cannot
    /// be reached or refuses the transaction; the caller retries later.
    public func commit(_ path: String) throws -> Result {
        lock.lock(); defer { lock.unlock() }
        guard FileManager.default.fileExists(atPath: path) else { return .duplicate(job: -1) }
        let result: PendingResult
        do { result = try ResultOutbox.read(path) } catch {
            return .rejected(outbox.reject(path), reason: "\(error)")
        }
        switch try queue.complete(result) {
        case .committed:
            outbox.remove(path)
            return .committed(job: result.job, frames: result.rows.count)
        case .alreadyDone:
            outbox.remove(path)
            return .duplicate(job: result.job)
        }
    }
}
