import Foundation
import Inference
import Output

/// Turns one row of logits into named top-k labels (`Labels.softmax` and `Labels.topK`), reusing
/// its probability buffer (no allocation per frame beyond the small result array).
struct Labeler {
    let names: [String]?
    let topK: Int
    let minScore: Float
    private var probs: [Float] = []

    init(names: [String]?, topK: Int, minScore: Float) {
        self.names = names; self.topK = topK; self.minScore = minScore
    }

    /// Softmax over the logits, then the `topK` best with score >= `minScore`.
    mutating func labels(_ row: UnsafeBufferPointer<Float>) -> [LabelScore] {
        guard topK > 0, row.count > 0 else { return [] }
        if probs.count != row.count { probs = Array(repeating: 0, count: row.count) }
        let best = probs.withUnsafeMutableBufferPointer { out -> [(index: Int, score: Float)] in
            Labels.softmax(row, into: out)
            return Labels.topK(UnsafeBufferPointer(out), k: topK)
        }
        return best.compactMap { b in
            guard b.score >= minScore else { return nil }
            let name = names.flatMap { b.index < $0.count ? $0[b.index] : nil }
            return LabelScore(index: b.index, label: name, score: b.score)
        }
    }
}

/// The top `k` labels of one row of logits (softmax probabilities).
public func topLabels(_ row: UnsafeBufferPointer<Float>, names: [String]?, k: Int, minScore: Float = 0) -> [LabelScore] {
    var labeler = Labeler(names: names, topK: k, minScore: minScore)
    return labeler.labels(row)
}
