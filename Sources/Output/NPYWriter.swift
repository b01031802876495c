import Foundation

/// Writes a float32 little-endian `.npy` file of shape [rows, dim], streaming rows as they come.
///
/// Format: NumPy's `.npy` version 1.0 (numpy/lib/format.py): magic `\x93NUMPY`, version 1.0, a
/// little-endian u16 header length, then an ASCII dict padded with spaces and `\n` so the data starts on
/// a 64-byte boundary. The row count is not known until the end, so the header is written with room for
/// any count and rewritten in place by `finish()`; its length never changes.
public final class NPYWriter {
    /// The file being written.
    public let file: AtomicFile
    /// Floats per row.
    public let dim: Int
    /// Rows written so far.
    public private(set) var rows = 0

    static let headerLength = 128  // whole preamble, a multiple of 64

    /// Starts a new `.npy` at `path` (through a temporary file; see `AtomicFile`).
    public init(path: String, dim: Int, io: FileIO = .system) throws {
        precondition(dim > 0)
        self.dim = dim
        file = try AtomicFile(finalPath: path, io: io)
        try file.write(Self.header(rows: 0, dim: dim))
    }

    /// The 128-byte preamble for a [rows, dim] float32 array.
    static func header(rows: Int, dim: Int) -> [UInt8] {
        var dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows), \(dim)), }"
        let fixed = 10  // magic(6) + version(2) + header-length(2)
        let padTo = headerLength - fixed - 1  // minus the final newline
        precondition(dict.utf8.count <= padTo, "npy header too long")
        dict += String(repeating: " ", count: padTo - dict.utf8.count) + "\n"
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        let hlen = UInt16(dict.utf8.count)
        out.append(UInt8(hlen & 0xff)); out.append(UInt8(hlen >> 8))
        out.append(contentsOf: dict.utf8)
        return out
    }

    /// Appends one row of `dim` floats (little-endian on this platform).
    public func append(_ row: UnsafeBufferPointer<Float>) throws {
        precondition(row.count == dim)
        try file.write(UnsafeRawBufferPointer(row))
        rows += 1
    }

    /// Rewrites the header with the final row count and publishes the file under its final name.
    public func finish() throws {
        try writeFinalHeader()
        try file.commit()
    }

    /// Rewrites the header with the final row count, leaving the commit to the caller (a set of
    /// files committed together: `FileSetCommit`).
    public func writeFinalHeader() throws {
        try file.rewrite(at: 0, Self.header(rows: rows, dim: dim))
    }

    /// Drops the temporary file.
    public func abandon() { file.abandon() }
}
