import Foundation
import Output

/// Turns one row of model outputs into the top-k labels, reusing its scratch buffer (no
/// allocation per frame beyond the small result array).
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
        var m = -Float.infinity
        for v in row where v > m { m = v }
        var sum: Float = 0
        for i in 0..<row.count {
            let e = expf(row[i] - m)
            probs[i] = e
            sum += e
        }
        let inv = 1 / sum
        for i in 0..<row.count { probs[i] *= inv }
        // Partial selection: keep the best k in a small sorted array.
        var best: [(index: Int, score: Float)] = []
        best.reserveCapacity(topK + 1)
        for i in 0..<probs.count {
            let s = probs[i]
            if best.count == topK, let last = best.last, s <= last.score { continue }
            var pos = best.count
            while pos > 0 && best[pos - 1].score < s { pos -= 1 }
            best.insert((i, s), at: pos)
            if best.count > topK { best.removeLast() }
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
