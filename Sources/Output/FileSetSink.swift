import Foundation

/// Receives the records of one input.
public protocol FrameSink: AnyObject {
    /// Writes one frame's record.
    func write(_ record: FrameRecord) throws
    /// The input ended: `error` is nil on success, else the reason it stopped early.
    func finish(error: String?) throws
    /// Drops whatever was not finished (on an output failure or cancellation).
    func abandon()
}

/// Per-input files in an output folder: `STEM.jsonl` (the JSON lines), `STEM.npy` (float32
/// [frames, dim] embeddings) and `STEM.csv` (frame, pts, top-k labels), each written under a
/// temporary name and renamed into place only when the input is complete.
///
/// An input that fails part-way (a damaged video) still gets its files, holding every frame decoded
/// before the damage, and its `.jsonl` ends with the error record; a failure to write (disk full)
/// leaves no file under a final name.
public final class FileSetSink: FrameSink {
    public let directory: String
    public let stem: String
    /// The input these files describe (as given on the command line).
    public let input: String
    private let options: EmitOptions
    private let topK: Int
    private let jsonl: AtomicFile
    private let csv: AtomicFile?
    /// `STEM.segments.csv` with `--segments`.
    private let segmentsCSV: AtomicFile?
    /// `STEM.pooled.npy` ([1, dim]) with `--pool`, once the pooled embedding is written.
    private var pooledNPY: NPYWriter?
    private var npy: NPYWriter?
    private let embeddingDim: Int
    private var lineBuffer: [UInt8] = []
    private var frames = 0

    /// Final paths of the files this sink produces.
    public var paths: [String] {
        var p = [directory + "/" + stem + ".jsonl"]
        if embeddingDim > 0 { p.append(directory + "/" + stem + ".npy") }
        if csv != nil { p.append(directory + "/" + stem + ".csv") }
        if segmentsCSV != nil { p.append(directory + "/" + stem + ".segments.csv") }
        if pooledNPY != nil { p.append(directory + "/" + stem + ".pooled.npy") }
        return p
    }

    /// Opens the temporary files. `embeddingDim` 0 writes no `.npy`; `topK` 0 writes no `.csv`.
    public init(input: String, directory: String, stem: String, options: EmitOptions,
                embeddingDim: Int, topK: Int, segments: Bool = false) throws {
        self.input = input
        self.directory = directory
        self.stem = stem
        self.options = options
        self.embeddingDim = embeddingDim
        self.topK = topK
        let base = directory + "/" + stem
        jsonl = try AtomicFile(finalPath: base + ".jsonl")
        if embeddingDim > 0 { npy = try NPYWriter(path: base + ".npy", dim: embeddingDim) }
        if topK > 0 {
            let c = try AtomicFile(finalPath: base + ".csv")
            var header = ["frame", "pts"]
            for i in 1...topK { header += ["label\(i)", "index\(i)", "score\(i)"] }
            try c.write(Array(CSV.row(header).utf8))
            csv = c
        } else {
            csv = nil
        }
        if segments {
            let c = try AtomicFile(finalPath: base + ".segments.csv")
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
        let npy = try NPYWriter(path: directory + "/" + stem + ".pooled.npy", dim: embedding.count)
        pooledNPY = npy
        try embedding.withUnsafeBufferPointer { try npy.append($0) }
    }

    /// A closed label segment: its record in `STEM.jsonl` and a row in `STEM.segments.csv`.
    public func writeSegment(_ segment: LabelSegment) throws {
        try jsonl.write(RecordEncoder.segmentLine(input: input, segment))
        try segmentsCSV?.write(Array(CSV.row(RecordEncoder.segmentCSVFields(segment)).utf8))
    }

    public func write(_ record: FrameRecord) throws {
        lineBuffer = RecordEncoder.frameLine(record, options: options, reusing: lineBuffer)
        try jsonl.write(lineBuffer)
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
            try csv.write(Array(CSV.row(fields).utf8))
        }
        frames += 1
    }

    public func finish(error: String?) throws {
        do {
            if let error {
                try jsonl.write(RecordEncoder.errorLine(input: input, message: error, framesEmitted: frames))
            }
            try npy?.finish()
            try csv?.commit()
            try segmentsCSV?.commit()
            try pooledNPY?.finish()
            try jsonl.commit()  // last: a present .jsonl means the set is complete
        } catch {
            abandon()
            throw error
        }
    }

    public func abandon() {
        jsonl.abandon(); npy?.abandon(); csv?.abandon(); segmentsCSV?.abandon(); pooledNPY?.abandon()
    }
}
