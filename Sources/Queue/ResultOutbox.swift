import Foundation
import Output

/// One frame's row for `framepipe_frames`.
public struct ResultRow: Sendable, Equatable {
    public var frame: Int
    public var pts: Double
    public var keyframe: Bool
    /// The top-k as JSON (`[{"index":..,"label":..,"score":..}]`), nil when labels are not computed.
    public var labelsJSON: String?
    /// float32 values, nil when embeddings are not computed.
    public var embedding: [Float]?

    public init(frame: Int, pts: Double, keyframe: Bool, labelsJSON: String?, embedding: [Float]?) {
        self.frame = frame; self.pts = pts; self.keyframe = keyframe; self.labelsJSON = labelsJSON; self.embedding = embedding
    }
}

/// A finished job's result as kept in the local outbox until the database has it.
public struct PendingResult: Sendable, Equatable {
    public var job: Int64
    public var attempt: Int
    public var worker: String
    public var input: String
    public var seconds: Double
    public var rows: [ResultRow]
}

/// The worker's local outbox: a finished job's rows are written here first (`NAME.partial-*` while
/// the job runs, fsynced and renamed to `job-ID-aATTEMPT.rows` when it is complete) and the file is
/// removed only once the database committed them, or reported the job done by another worker. A
/// database outage, or a kill between the two, therefore never loses a finished result: the
/// worker commits what is sealed here before it claims anything new, also after a restart.
///
/// File format (text, one record a line): a JSON header line `{"v":1,"job":..,"attempt":..,
/// "worker":..,"input":..}`; one line per frame, tab-separated: frame, pts, keyframe (0/1), the
/// embedding as base64 of float32 little-endian (empty: none), the labels JSON (`-`: none; JSON has no
/// raw tabs or newlines); and a last line `end<TAB>FRAMES<TAB>SECONDS`.
public final class ResultOutbox: @unchecked Sendable {
    public let directory: String
    static let suffix = ".rows"

    /// Creates the folder if needed and removes unfinished files of a killed run (never sealed ones).
    public init(directory: String) throws {
        self.directory = directory
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw QueueError("\(directory): cannot create the queue outbox folder: \(error.localizedDescription)")
        }
        AtomicFile.removeLeftovers(in: directory)
    }

    /// The final path of `job`'s result.
    public func path(for job: ClaimedJob) -> String { directory + "/job-\(job.id)-a\(job.attempt)" + Self.suffix }

    /// Sealed results waiting for the database, oldest job first.
    public func sealed() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasPrefix("job-") && $0.hasSuffix(Self.suffix) }
            .sorted { Self.jobNumber($0) < Self.jobNumber($1) }
            .map { directory + "/" + $0 }
    }

    private static func jobNumber(_ name: String) -> Int64 {
        Int64(name.dropFirst(4).prefix { $0.isNumber }) ?? 0
    }

    /// Removes a result the database has (or no longer wants).
    public func remove(_ path: String) {
        unlink(path)
        AtomicFile.syncDirectory(of: path)
    }

    /// Moves an unreadable result aside (`rejected/`), so it cannot block the ones after it.
    public func reject(_ path: String) -> String {
        let dir = directory + "/rejected"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let target = dir + "/" + (path as NSString).lastPathComponent
        rename(path, target)
        return target
    }

    /// Reads a sealed result.
    public static func read(_ path: String) throws -> PendingResult {
        func bad(_ why: String) -> QueueError { QueueError("\(path): not a complete outbox file: \(why)") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw QueueError("\(path): cannot read: \(String(cString: strerror(errno)))")
        }
        var lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        guard lines.count >= 2,
              let header = try? JSONSerialization.jsonObject(with: Data(lines[0])) as? [String: Any],
              header["v"] as? Int == 1, let job = (header["job"] as? NSNumber)?.int64Value,
              let attempt = header["attempt"] as? Int, let worker = header["worker"] as? String,
              let input = header["input"] as? String else { throw bad("bad header line") }
        let trailer = lines.last!.split(separator: UInt8(ascii: "\t"), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard trailer.count == 3, trailer[0] == "end", let count = Int(trailer[1]), let seconds = Double(trailer[2]) else {
            throw bad("no end line")
        }
        var rows: [ResultRow] = []
        rows.reserveCapacity(count)
        for line in lines.dropFirst().dropLast() {
            let f = line.split(separator: UInt8(ascii: "\t"), maxSplits: 4, omittingEmptySubsequences: false)
            guard f.count == 5, let frame = Int(String(decoding: f[0], as: UTF8.self)),
                  let pts = Double(String(decoding: f[1], as: UTF8.self)) else { throw bad("bad row \(rows.count + 1)") }
            var embedding: [Float]?
            if !f[3].isEmpty {
                guard let bytes = Data(base64Encoded: Data(f[3])), bytes.count % 4 == 0 else { throw bad("bad embedding in row \(rows.count + 1)") }
                embedding = bytes.withUnsafeBytes { raw in
                    (0..<(bytes.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
                }
            }
            let labels = String(decoding: f[4], as: UTF8.self)
            rows.append(ResultRow(frame: frame, pts: pts, keyframe: f[2].first == UInt8(ascii: "1"),
                                  labelsJSON: labels == "-" ? nil : labels, embedding: embedding))
        }
        guard rows.count == count else { throw bad("\(rows.count) rows, the end line says \(count)") }
        return PendingResult(job: job, attempt: attempt, worker: worker, input: input, seconds: seconds, rows: rows)
    }
}

/// Writes one job's outbox file while the job runs (`ResultsSink` drives it).
final class OutboxWriter {
    private let file: AtomicFile
    private(set) var rows = 0
    private var line: [UInt8] = []

    init(outbox: ResultOutbox, job: ClaimedJob, worker: String) throws {
        file = try AtomicFile(finalPath: outbox.path(for: job))
        var w = JSONObjectWriter()
        w.field("v", 1)
        w.field("job", Int(job.id))
        w.field("attempt", job.attempt)
        w.field("worker", worker)
        w.field("input", job.input)
        try file.write(w.finishLine())
    }

    func append(frame: Int, pts: Double, keyframe: Bool, labelsJSON: [UInt8]?, embedding: UnsafeBufferPointer<Float>?) throws {
        line.removeAll(keepingCapacity: true)
        line.append(contentsOf: "\(frame)\t\(pts)\t\(keyframe ? 1 : 0)\t".utf8)
        if let e = embedding {
            var le = [UInt8](); le.reserveCapacity(e.count * 4)
            for v in e { withUnsafeBytes(of: v.bitPattern.littleEndian) { le.append(contentsOf: $0) } }
            line.append(contentsOf: Data(le).base64EncodedString().utf8)
        }
        line.append(UInt8(ascii: "\t"))
        if let l = labelsJSON { line.append(contentsOf: l) } else { line.append(UInt8(ascii: "-")) }
        line.append(UInt8(ascii: "\n"))
        try file.write(line)
        rows += 1
    }

    /// Writes the end line, fsyncs and renames: the result is sealed. Returns its path.
    func seal(seconds: Double) throws -> String {
        try file.write(Array("end\t\(rows)\t\(seconds)\n".utf8))
        try file.commit()
        return file.finalPath
    }

    func abandon() { file.abandon() }
}
