import Foundation
import Testing
import TestSupport

/// Models and onnxruntime goldens generated once per test run by Fixtures/make_models.py.
enum Fixtures {
    struct Entry: Decodable {
        let size: Int
        let classes: Int
        let batches: [Int]
    }

    /// The folder holding the generated models (generation runs on first use).
    static let directory: Result<URL, Error> = Result {
        let dir = try TestEnv.tempDir("framepipe-infer-fixtures")
        let script = TestEnv.packageRoot.appendingPathComponent("Tests/InferenceTests/Fixtures/make_models.py").path
        let result = try runProcess(TestEnv.python, [script, dir.path], timeout: 600)
        guard result.status == 0 else {
            throw FixtureError("make_models.py failed (\(result.status)): \(result.stderrText)")
        }
        return dir
    }

    static var manifest: [String: Entry] {
        get throws {
            let data = try Data(contentsOf: directory.get().appendingPathComponent("manifest.json"))
            return try JSONDecoder().decode([String: Entry].self, from: data)
        }
    }

    static func path(_ name: String) throws -> String { try directory.get().appendingPathComponent(name).path }

    /// Reads a raw little-endian float32 file.
    static func floats(_ name: String) throws -> [Float] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path(name)))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Comparison helpers.
enum Compare {
    static func maxAbsDiff(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Float {
        zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }
    static func cosine(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Float {
        var dot: Double = 0, na: Double = 0, nb: Double = 0
        for (x, y) in zip(a, b) { dot += Double(x * y); na += Double(x * x); nb += Double(y * y) }
        return Float(dot / (na.squareRoot() * nb.squareRoot()))
    }
    static func argmax(_ a: ArraySlice<Float>) -> Int { a.indices.max { a[$0] < a[$1] }! - a.startIndex }
    /// top-1 minus top-2.
    static func margin(_ a: ArraySlice<Float>) -> Float {
        let s = a.sorted(by: >)
        return s[0] - s[1]
    }
}
