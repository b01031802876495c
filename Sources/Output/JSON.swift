import Foundation

/// Builds one JSON object as bytes, field by field, without Foundation's JSONSerialization
/// (which is slow for float arrays and reorders keys). Keys are emitted in call order.
public struct JSONObjectWriter {
    /// The bytes written so far (an unterminated object until `finish()`).
    public private(set) var bytes: [UInt8]
    private var first = true

    /// Starts an object, reusing `buffer`'s storage.
    public init(reusing buffer: [UInt8] = []) {
        bytes = buffer
        bytes.removeAll(keepingCapacity: true)
        bytes.append(UInt8(ascii: "{"))
    }

    private mutating func key(_ name: String) {
        if !first { bytes.append(UInt8(ascii: ",")) }
        first = false
        JSON.appendString(name, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
    }

    /// Adds `"name": "value"`.
    public mutating func field(_ name: String, _ value: String) {
        key(name); JSON.appendString(value, to: &bytes)
    }

    /// Adds `"name": integer`.
    public mutating func field(_ name: String, _ value: Int) {
        key(name); bytes.append(contentsOf: String(value).utf8)
    }

    /// Adds `"name": number` (shortest round-trip form; `null` for NaN and infinities).
    public mutating func field(_ name: String, _ value: Double) {
        key(name); JSON.appendNumber(value, to: &bytes)
    }

    /// Adds `"name": number` for a Float.
    public mutating func field(_ name: String, _ value: Float) {
        key(name); JSON.appendNumber(value, to: &bytes)
    }

    /// Adds `"name": true|false`.
    public mutating func field(_ name: String, _ value: Bool) {
        key(name); bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    /// Adds `"name": [f0, f1, ...]`.
    public mutating func field(_ name: String, floats: UnsafeBufferPointer<Float>) {
        key(name)
        bytes.append(UInt8(ascii: "["))
        for (i, v) in floats.enumerated() {
            if i > 0 { bytes.append(UInt8(ascii: ",")) }
            JSON.appendNumber(v, to: &bytes)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    /// Adds `"name": <raw JSON>`; `raw` must already be valid JSON.
    public mutating func field(_ name: String, rawJSON raw: [UInt8]) {
        key(name); bytes.append(contentsOf: raw)
    }

    /// Closes the object and appends a newline; returns the finished line.
    public mutating func finishLine() -> [UInt8] {
        bytes.append(UInt8(ascii: "}"))
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }
}

/// JSON text helpers.
public enum JSON {
    /// Appends `s` as a JSON string literal (quotes, escapes for `"`, `\` and control characters).
    public static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out.append(contentsOf: [92, 34])
            case UInt8(ascii: "\\"): out.append(contentsOf: [92, 92])
            case 0x0A: out.append(contentsOf: [92, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [92, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [92, UInt8(ascii: "t")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48, hex[Int(b >> 4)], hex[Int(b & 15)]])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// A JSON string literal for `s`.
    public static func quoted(_ s: String) -> String {
        var out: [UInt8] = []
        appendString(s, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends a finite number in Swift's shortest round-trip form, `null` otherwise.
    public static func appendNumber<F: BinaryFloatingPoint & LosslessStringConvertible>(_ v: F, to out: inout [UInt8]) {
        if v.isFinite {
            var s = v.description
            // Swift prints whole numbers as "3.0" (valid JSON); keep it. Strip nothing else.
            if s == "-0.0" { s = "0.0" }
            out.append(contentsOf: s.utf8)
        } else {
            out.append(contentsOf: "null".utf8)
        }
    }
}
