// A small, bounds-checked reader of FlatBuffers binaries: exactly what the TFLite schema needs
// (tables, scalars, strings, vectors of scalars and of tables, unions as a type byte + table).
//
// Follows the FlatBuffers binary format ("FlatBuffers internals",
// https://flatbuffers.dev/internals/): little-endian throughout; the buffer starts with a uoffset
// (u32) to the root table, optionally followed by a 4-byte file identifier; a table starts with an
// soffset (i32) back to its vtable (`vtable = table - soffset`); a vtable holds its own size (u16),
// the table's inline size (u16) and one u16 offset per field (0: absent, use the default); a
// reference field holds a uoffset relative to the field's own position; a vector or string is a
// u32 count followed by the elements (strings also carry a trailing 0).
//
// Every read is checked against the buffer's size and every count against the bytes that could
// hold it before anything is allocated, so a hostile file gives a `FlatBufferError`, never a trap.

/// Bad FlatBuffers data: what was being read and where.
struct FlatBufferError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// An immutable FlatBuffers buffer.
struct FlatBuffer {
    let bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var count: Int { bytes.count }

    /// The 4-byte file identifier at offset 4 (nil when the buffer is too short).
    var fileIdentifier: [UInt8]? { bytes.count >= 8 ? Array(bytes[4..<8]) : nil }

    /// The root table (the uoffset at offset 0).
    func root() throws -> FBTable {
        try FBTable(self, at: try reference(at: 0, what: "root table"))
    }

    // MARK: Scalars (little-endian, unaligned-safe)

    func check(_ offset: Int, _ size: Int, _ what: String) throws {
        guard offset >= 0, size >= 0, offset <= bytes.count, size <= bytes.count - offset else {
            throw FlatBufferError("\(what): \(size) byte(s) at offset \(offset) lie outside the \(bytes.count)-byte file")
        }
    }

    func u8(_ at: Int, _ what: String) throws -> UInt8 {
        try check(at, 1, what)
        return bytes[at]
    }

    func u16(_ at: Int, _ what: String) throws -> UInt16 {
        try check(at, 2, what)
        return UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8
    }

    func u32(_ at: Int, _ what: String) throws -> UInt32 {
        try check(at, 4, what)
        return UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
    }

    func u64(_ at: Int, _ what: String) throws -> UInt64 {
        try check(at, 8, what)
        var v: UInt64 = 0
        for i in (0..<8).reversed() { v = v << 8 | UInt64(bytes[at + i]) }
        return v
    }

    func i32(_ at: Int, _ what: String) throws -> Int32 { Int32(bitPattern: try u32(at, what)) }
    func i64(_ at: Int, _ what: String) throws -> Int64 { Int64(bitPattern: try u64(at, what)) }
    func f32(_ at: Int, _ what: String) throws -> Float { Float(bitPattern: try u32(at, what)) }

    /// Follows the uoffset stored at `at` and returns the absolute position it points to.
    func reference(at: Int, what: String) throws -> Int {
        let target = at + Int(try u32(at, what))
        try check(target, 4, what)
        return target
    }

    /// The vector whose uoffset is stored at `at`, with elements of `elementSize` bytes.
    func vector(at: Int, elementSize: Int, what: String) throws -> FBVector {
        let start = try reference(at: at, what: what)
        let count = Int(try u32(start, what + " length"))
        let (bytesNeeded, overflow) = count.multipliedReportingOverflow(by: elementSize)
        guard !overflow else { throw FlatBufferError("\(what): \(count) elements cannot fit in the file") }
        try check(start + 4, bytesNeeded, "\(what) (\(count) elements)")
        return FBVector(buffer: self, start: start + 4, count: count, elementSize: elementSize, what: what)
    }
}

/// A table: a position and its vtable, both checked.
struct FBTable {
    let buffer: FlatBuffer
    let position: Int
    private let vtable: Int
    private let vtableSize: Int
    private let tableSize: Int

    init(_ buffer: FlatBuffer, at position: Int) throws {
        let soffset = Int(try buffer.i32(position, "table"))
        let vtable = position - soffset
        let vtableSize = Int(try buffer.u16(vtable, "vtable"))
        let tableSize = Int(try buffer.u16(vtable + 2, "vtable"))
        guard vtableSize >= 4, vtableSize % 2 == 0, tableSize >= 4 else {
            throw FlatBufferError("vtable at offset \(vtable): sizes \(vtableSize)/\(tableSize) are malformed")
        }
        try buffer.check(vtable, vtableSize, "vtable")
        try buffer.check(position, tableSize, "table")
        self.buffer = buffer
        self.position = position
        self.vtable = vtable
        self.vtableSize = vtableSize
        self.tableSize = tableSize
    }

    /// Absolute position of field `index` (0-based, in schema order), nil when absent.
    /// `size` is the number of inline bytes the field needs (4 for a reference).
    func field(_ index: Int, size: Int) throws -> Int? {
        let slot = 4 + 2 * index
        guard slot + 2 <= vtableSize else { return nil }
        let offset = Int(try buffer.u16(vtable + slot, "vtable entry"))
        guard offset != 0 else { return nil }
        guard offset >= 4, offset + size <= tableSize else {
            throw FlatBufferError("field \(index) of the table at offset \(position) lies outside the table")
        }
        return position + offset
    }

    func u8(_ index: Int, default value: UInt8 = 0) throws -> UInt8 {
        guard let at = try field(index, size: 1) else { return value }
        return try buffer.u8(at, "field")
    }

    func i8(_ index: Int, default value: Int8 = 0) throws -> Int8 {
        Int8(bitPattern: try u8(index, default: UInt8(bitPattern: value)))
    }

    func bool(_ index: Int, default value: Bool = false) throws -> Bool {
        try u8(index, default: value ? 1 : 0) != 0
    }

    func i32(_ index: Int, default value: Int32 = 0) throws -> Int32 {
        guard let at = try field(index, size: 4) else { return value }
        return try buffer.i32(at, "field")
    }

    func u32(_ index: Int, default value: UInt32 = 0) throws -> UInt32 {
        guard let at = try field(index, size: 4) else { return value }
        return try buffer.u32(at, "field")
    }

    func u64(_ index: Int, default value: UInt64 = 0) throws -> UInt64 {
        guard let at = try field(index, size: 8) else { return value }
        return try buffer.u64(at, "field")
    }

    func f32(_ index: Int, default value: Float = 0) throws -> Float {
        guard let at = try field(index, size: 4) else { return value }
        return try buffer.f32(at, "field")
    }

    /// A sub-table (also the value of a union field), nil when absent.
    func table(_ index: Int, _ what: String) throws -> FBTable? {
        guard let at = try field(index, size: 4) else { return nil }
        return try FBTable(buffer, at: try buffer.reference(at: at, what: what))
    }

    /// A vector field, nil when absent.
    func vector(_ index: Int, elementSize: Int, _ what: String) throws -> FBVector? {
        guard let at = try field(index, size: 4) else { return nil }
        return try buffer.vector(at: at, elementSize: elementSize, what: what)
    }

    /// A string field (UTF-8; invalid sequences are repaired), nil when absent.
    func string(_ index: Int, _ what: String) throws -> String? {
        guard let v = try vector(index, elementSize: 1, what) else { return nil }
        return String(decoding: buffer.bytes[v.start..<(v.start + v.count)], as: UTF8.self)
    }

    /// A vector of int32 as `Int`s (empty when absent).
    func ints(_ index: Int, _ what: String) throws -> [Int] {
        guard let v = try vector(index, elementSize: 4, what) else { return [] }
        return try (0..<v.count).map { Int(try buffer.i32(v.start + 4 * $0, what)) }
    }
}

/// A vector's elements: `count` elements of `elementSize` bytes from `start` (already checked).
struct FBVector {
    let buffer: FlatBuffer
    let start: Int
    let count: Int
    let elementSize: Int
    let what: String

    /// Element `i` of a vector of tables.
    func table(_ i: Int) throws -> FBTable {
        precondition(i >= 0 && i < count && elementSize == 4)
        return try FBTable(buffer, at: try buffer.reference(at: start + 4 * i, what: "\(what)[\(i)]"))
    }

    func f32(_ i: Int) throws -> Float { try buffer.f32(start + 4 * i, what) }
    func i64(_ i: Int) throws -> Int64 { try buffer.i64(start + 8 * i, what) }

    /// The raw bytes of the vector.
    var byteRange: Range<Int> { start..<(start + count * elementSize) }
}
