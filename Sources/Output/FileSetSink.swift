import Foundation

/// Receives the records of one input.
public protocol FrameSink: AnyObject {
    /// Writes one frame's record.
    func write(_ record: FrameRecord) throws
    /// The input ended: `error` is nil on success, else the reason it stopped early.
    func finish(error: String?) throws
    /// Drops whatever was not finished (on an output failure or cancellation).
    func abandon()
    /// Finishes like `finish(error:)` without making the caller wait for the sink's own work
    /// (flushing, fsync, renames): `completion` is called once, on a thread of the sink's choosing,
    /// with nil when the output is complete or with the error that stopped it. After this call the
    /// caller writes nothing more to the sink. The default runs `finish(error:)` on the caller's
    /// thread and then calls `completion`.
    func finish(error: String?, completion: @escaping @Sendable (Error?) -> Void)
    /// Final paths of the files this sink produces (nothing for sinks without files).
    var outputPaths: [String] { get }
    /// A closed label segment (`--segments`), in order with the frames.
    func writeSegment(_ segment: LabelSegment) throws
    /// The input's pooled embedding (`--pool`): once, after its last frame, before `finish`.
    func writePooled(mode: PoolMode, frames: Int, embedding: [Float]) throws
    /// `dropped` live frames were given up (the input outran inference), in order with the
    /// records: as it happens, so a counter of drops is current while the input still runs.
    func noteDropped(_ dropped: Int)
}

extension FrameSink {
    public func finish(error: String?, completion: @escaping @Sendable (Error?) -> Void) {
        do {
            try finish(error: error)
            completion(nil)
        } catch {
            completion(error)
        }
    }

    public var outputPaths: [String] { [] }

    /// Sinks that carry only frame records (a stream's log, a queue job's results) skip segments.
    public func writeSegment(_ segment: LabelSegment) throws {}
    /// Sinks that carry only frame records skip the pooled record.
    public func writePooled(mode: PoolMode, frames: Int, embedding: [Float]) throws {}
    /// Most sinks have nothing to say about drops (the input's outcome counts them at its end).
    public func noteDropped(_ dropped: Int) {}
}

/// Per-input files in an output folder: `STEM.jsonl` (the JSON lines), `STEM.npy` (float32
/// [frames, dim] embeddings) and `STEM.csv` (frame, pts, top-k labels, duration), written under temporary
/// names and published as one set (`FileSetCommit`) when the input is complete: all files appear,
/// `.jsonl` last, or none does.
///
/// An input that fails part-way (a damaged video) still gets its files, holding every frame decoded
/// before the damage, and its `.jsonl` ends with the error record; a failure to write (disk full,
/// at any file of the set, or a failed fsync or rename) leaves no file under a final name.
///
/// Threads: `write` runs on the caller's (the pipeline's emit) thread; the commit runs on the sink's
/// own serial queue (`finish(error:completion:)`), so its fsyncs never hold up other inputs'
/// records. `finish(error:)` is the same commit, waited for.
public final class FileSetSink: FrameSink, @unchecked Sendable {
    public let directory: String
    public let stem: String
    /// The input these files describe (as given on the command line).
    public let input: String
    private let options: EmitOptions
    private let topK: Int
    private let jsonl: AtomicFile
    private let csv: AtomicFile?
    private var npy: NPYWriter?
    /// `STEM.segments.csv` with `--segments`.
    private let segmentsCSV: AtomicFile?
    /// `STEM.pooled.npy` ([1, dim]) with `--pool`, once the pooled embedding is written.
    private var pooledNPY: NPYWriter?
    /// `STEM.segments.npy` ([segments, dim]) with `--segments` and `--pool`, from the first
    /// segment with a pooled embedding on: one row per segment, in segment order.
    private var segmentsNPY: NPYWriter?
    private let io: FileIO
    private let embeddingDim: Int
    /// False with `--segments` alone: `STEM.jsonl` carries no frame records, as stdout would not
    /// (the `.npy` and `.csv` rows are still per frame).
    private let frameLines: Bool
    private var lineBuffer: [UInt8] = []
    private var frames = 0
    /// Commits (and abandons, so the two never overlap) run here, off the writer's thread.
    private let commitQueue = DispatchQueue(label: "framepipe.output.commit")

    /// Final paths of the files this sink produces.
    public var paths: [String] {
        var p = [directory + "/" + stem + ".jsonl"]
        if embeddingDim > 0 { p.append(directory + "/" + stem + ".npy") }
        if csv != nil { p.append(directory + "/" + stem + ".csv") }
        if segmentsCSV != nil { p.append(directory + "/" + stem + ".segments.csv") }
        if pooledNPY != nil { p.append(directory + "/" + stem + ".pooled.npy") }
        if segmentsNPY != nil { p.append(directory + "/" + stem + ".segments.npy") }
        return p
    }

    public var outputPaths: [String] { paths }

    /// Opens the temporary files. `embeddingDim` 0 writes no `.npy`; `topK` 0 writes no `.csv`;
    /// `frameLines` false keeps frame records out of the `.jsonl`. `io` carries the file system
    /// calls (tests pass failing ones).
    public init(input: String, directory: String, stem: String, options: EmitOptions,
                embeddingDim: Int, topK: Int, segments: Bool = false, frameLines: Bool = true, io: FileIO = .system) throws {
        self.io = io
        self.frameLines = frameLines
        self.input = input
        self.directory = directory
        self.stem = stem
        self.options = options
        self.embeddingDim = embeddingDim
        self.topK = topK
        let base = directory + "/" + stem
        jsonl = try AtomicFile(finalPath: base + ".jsonl", io: io)
        if embeddingDim > 0 { npy = try NPYWriter(path: base + ".npy", dim: embeddingDim, io: io) }
        if topK > 0 {
            let c = try AtomicFile(finalPath: base + ".csv", io: io)
            var header = ["frame", "pts"]
            for i in 1...topK { header += ["label\(i)", "index\(i)", "score\(i)"] }
            header.append("duration")
            try c.write(Array(CSV.row(header).utf8))
            csv = c
        } else {
            csv = nil
        }
        if segments {
            let c = try AtomicFile(finalPath: base + ".segments.csv", io: io)
            try c.write(Array(CSV.row(RecordEncoder.segmentCSVHeader).utf8))
            segmentsCSV = c
        } else {
            segmentsCSV = nil
        }
    }

    /// The input's pooled embedding: its record in `STEM.jsonl` and `STEM.pooled.npy` (one row).
    public func writePooled(mode: PoolMode, frames: Int, embedding: [Float]) throws {
        try jsonl.write(RecordEncoder.pooledLine(input: input, mode: mode, frames: frames, embedding: embedding,
                                                 encoding: options.embeddingEncoding))
        let npy = try NPYWriter(path: directory + "/" + stem + ".pooled.npy", dim: embedding.count, io: io)
        pooledNPY = npy
        try embedding.withUnsafeBufferPointer { try npy.append($0) }
    }

    /// A closed label segment: its record in `STEM.jsonl` and a row in `STEM.segments.csv`; with a
    /// pooled embedding, that record too and a row in `STEM.segments.npy`.
    public func writeSegment(_ segment: LabelSegment) throws {
        try jsonl.write(RecordEncoder.segmentLines(input: input, segment, encoding: options.embeddingEncoding))
        try segmentsCSV?.write(Array(CSV.row(RecordEncoder.segmentCSVFields(segment)).utf8))
        if let p = segment.pooled {
            if segmentsNPY == nil {
                segmentsNPY = try NPYWriter(path: directory + "/" + stem + ".segments.npy", dim: p.values.count, io: io)
            }
            try p.values.withUnsafeBufferPointer { try segmentsNPY!.append($0) }
        }
    }

    public func write(_ record: FrameRecord) throws {
        if frameLines {
            lineBuffer = RecordEncoder.frameLine(record, options: options, reusing: lineBuffer)
            try jsonl.write(lineBuffer)
        }
        if let npy, let e = record.embedding { try npy.append(e) }
        if let csv {
            var fields = [String(record.frame), String(record.pts)]
            for i in 0..<topK {
                if i < record.labels.count {
                    let l = record.labels[i]
                    fields += [l.label ?? "", String(l.index), String(l.score)]
                } else {
                    fields += ["", "", ""]
                }
            }
            fields.append(record.duration.map { String($0) } ?? "")
            try csv.write(Array(CSV.row(fields).utf8))
        }
        frames += 1
    }

    /// Commits the set and waits for it (see `finish(error:completion:)`).
    public func finish(error: String?) throws {
        let done = DispatchSemaphore(value: 0)
        let result = CommitResult()
        finish(error: error) { result.error = $0; done.signal() }
        done.wait()
        if let e = result.error { throw e }
    }

    /// Appends the error record (when `error` is set), then commits the set on the sink's queue:
    /// every file flushed and fsynced, renamed `.npy`, `.csv`, `.jsonl`, the folder fsynced; any
    /// failure rolls the set back. `completion` runs on that queue.
    public func finish(error: String?, completion: @escaping @Sendable (Error?) -> Void) {
        commitQueue.async { [self] in
            do {
                if let error {
                    try jsonl.write(RecordEncoder.errorLine(input: input, message: error, framesEmitted: frames))
                }
                try npy?.writeFinalHeader()
                try pooledNPY?.writeFinalHeader()
                try segmentsNPY?.writeFinalHeader()
                // .jsonl last: a present .jsonl means the set is complete.
                try FileSetCommit.commit([npy?.file, csv, segmentsCSV, pooledNPY?.file, segmentsNPY?.file, jsonl].compactMap { $0 })
                completion(nil)
            } catch {
                abandonFiles()
                completion(error)
            }
        }
    }

    /// Drops the temporary files (after any commit in flight; a committed set stays).
    public func abandon() {
        commitQueue.sync { abandonFiles() }
    }

    private func abandonFiles() {
        jsonl.abandon(); npy?.abandon(); csv?.abandon(); segmentsCSV?.abandon(); pooledNPY?.abandon()
        segmentsNPY?.abandon()
    }
}

/// The outcome of a commit, handed from the sink's queue to the thread waiting for it.
private final class CommitResult: @unchecked Sendable {
    var error: Error?
}
