#if canImport(Glibc)
import Glibc
#else
import Foundation
#endif

/// Turning logits into labels: softmax and top-k.
public enum Labels {
    /// Numerically stable softmax (subtracts the maximum first), written into `out`
    /// (same count as `logits`); allocates nothing.
    public static func softmax(_ logits: UnsafeBufferPointer<Float>, into out: UnsafeMutableBufferPointer<Float>) {
        precondition(out.count == logits.count, "softmax output size")
        guard let m = logits.max() else { return }
        var sum: Float = 0
        for i in 0..<logits.count {
            let e = expf(logits[i] - m)
            out[i] = e
            sum += e
        }
        let inv = 1 / sum
        for i in 0..<out.count { out[i] *= inv }
    }

    /// Numerically stable softmax (subtracts the maximum first).
    public static func softmax(_ logits: UnsafeBufferPointer<Float>) -> [Float] {
        var out = [Float](repeating: 0, count: logits.count)
        out.withUnsafeMutableBufferPointer { softmax(logits, into: $0) }
        return out
    }

    /// The `k` highest scores, best first (ties keep the lower index first).
    public static func topK(_ probs: UnsafeBufferPointer<Float>, k: Int) -> [(index: Int, score: Float)] {
        var best: [(index: Int, score: Float)] = []
        guard k > 0 else { return best }
        best.reserveCapacity(k + 1)
        for (i, p) in probs.enumerated() {
            guard best.count < k || p > best[best.count - 1].score else { continue }
            let at = best.firstIndex { p > $0.score } ?? best.count
            best.insert((i, p), at: at)
            if best.count > k { best.removeLast() }
        }
        return best
    }

    /// The `k` highest scores of an array, best first.
    public static func topK(_ probs: [Float], k: Int) -> [(index: Int, score: Float)] {
        probs.withUnsafeBufferPointer { topK($0, k: k) }
    }
}
