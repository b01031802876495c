/// Turning logits into labels: softmax and top-k.
public enum Labels {
    /// Numerically stable softmax (subtracts the maximum first).
    public static func softmax(_ logits: UnsafeBufferPointer<Float>) -> [Float] {
        guard let m = logits.max() else { return [] }
        var out = logits.map { ($0 - m).exp() }
        let sum = out.reduce(0, +)
        for i in out.indices { out[i] /= sum }
        return out
    }

    /// The `k` highest scores, best first (ties keep the lower index first).
    public static func topK(_ probs: [Float], k: Int) -> [(index: Int, score: Float)] {
        var best: [(index: Int, score: Float)] = []
        best.reserveCapacity(k + 1)
        for (i, p) in probs.enumerated() {
            guard best.count < k || p > best[best.count - 1].score else { continue }
            let at = best.firstIndex { p > $0.score } ?? best.count
            best.insert((i, p), at: at)
            if best.count > k { best.removeLast() }
        }
        return best
    }
}

private extension Float {
    func exp() -> Float {
        #if canImport(Glibc)
        return Glibc.expf(self)
        #else
        return Foundation.exp(self)
        #endif
    }
}
#if canImport(Glibc)
import Glibc
#else
import Foundation
#endif
