import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

// Shared by the Hostile*Tests suites: checking `framepipe run` output against the rules for bad
// input, and a loopback TCP/HTTP server.

/// How one input of a `framepipe run` ended, read back from its JSON lines.
struct InputResult {
    var frames = 0
    /// Error records (`{"v":1,"input":..,"error":..,"frames":N}`) for this input.
    var errors: [[String: Any]] = []
    var frameAfterError = false
}

/// Checks one `framepipe run` (stdout JSON lines) over `inputs` against the hostile-input rules and
/// returns per-input results plus every broken rule: no crash (signal), no hang, no partial line,
/// at most one error record per input and exactly one when it produced nothing, the record counts
/// the frames emitted and comes last, one stderr line per failed input, exit status 0/1 to match.
func checkRun(_ r: ProcessResult, inputs: [String]) -> (results: [String: InputResult], problems: [String]) {
    var problems: [String] = []
    if r.timedOut { problems.append("HANG: the run was killed after its time limit") }
    if r.signaled { problems.append("CRASH: ended by signal \(r.status)") }
    if !r.stdout.isEmpty && r.stdout.last != UInt8(ascii: "\n") { problems.append("PARTIAL: stdout does not end with a newline") }
    var results: [String: InputResult] = [:]
    for input in inputs { results[input] = InputResult() }
    for line in r.lines {
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
              let input = obj["input"] as? String else {
            problems.append("PARTIAL or invalid line: \(line.prefix(120))")
            continue
        }
        guard var res = results[input] else { problems.append("line for an unknown input: \(input)"); continue }
        if obj["error"] != nil {
            res.errors.append(obj)
        } else {
            if !res.errors.isEmpty { res.frameAfterError = true }
            res.frames += 1
        }
        results[input] = res
    }
    var anyError = false
    for input in inputs {
        let res = results[input]!
        let name = URL(fileURLWithPath: input).lastPathComponent
        if res.errors.count > 1 { problems.append("\(name): \(res.errors.count) error records") }
        if res.frames == 0 && res.errors.count != 1 { problems.append("\(name): no frames and no error record") }
        if res.frameAfterError { problems.append("\(name): frame records after its error record") }
        if let e = res.errors.first {
            anyError = true
            if (e["frames"] as? Int) != res.frames { problems.append("\(name): error record says \(e["frames"] ?? "nil") frames, \(res.frames) emitted") }
            if ((e["error"] as? String) ?? "").isEmpty { problems.append("\(name): empty error message") }
            if !r.stderrText.contains("framepipe: \(input): ") { problems.append("\(name): no stderr line naming it") }
        }
    }
    if !r.timedOut && !r.signaled && r.status != (anyError ? 1 : 0) {
        problems.append("exit status \(r.status), expected \(anyError ? 1 : 0)")
    }
    return (results, problems)
}

/// The resident set size of process `pid` in kB (from /proc), nil when it is gone.
func residentKB(_ pid: Int32) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    return status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }?
        .split(separator: " ").dropFirst().first.flatMap { Int($0) }
}

extension SplitMix {
    /// A value in 0..<n (SplitMix is MediaCommandTests' deterministic generator).
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
}

struct HostileError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
