import Foundation

/// A reusable batch: model input samples written in place by the scale stage, model outputs written
/// by the infer stage, read by the emit stage, then returned to the pool. Allocated once.
final class Batch: @unchecked Sendable {
    let capacity: Int
    let sampleSize: Int
    let input: UnsafeMutablePointer<Float>
    let embeddings: UnsafeMutablePointer<Float>?
    let logits: UnsafeMutablePointer<Float>?
    let embeddingDim: Int
    let classCount: Int
    var metas: [FrameMeta]
    var count: Int { metas.count }
    var isFull: Bool { metas.count == capacity }
    /// The input this batch currently carries frames of.
    var job: Job?
    /// Set by the infer stage when the model failed on this batch.
    var error: String?

    init(capacity: Int, sampleSize: Int, embeddingDim: Int, classCount: Int) {
        self.capacity = capacity
        self.sampleSize = sampleSize
        self.embeddingDim = embeddingDim
        self.classCount = classCount
        input = .allocate(capacity: capacity * sampleSize)
        input.initialize(repeating: 0, count: capacity * sampleSize)
        embeddings = embeddingDim > 0 ? .allocate(capacity: capacity * embeddingDim) : nil
        logits = classCount > 0 ? .allocate(capacity: capacity * classCount) : nil
        metas = []
        metas.reserveCapacity(capacity)
    }

    deinit {
        input.deallocate(); embeddings?.deallocate(); logits?.deallocate()
    }

    /// The slot for the next sample.
    var nextSlot: UnsafeMutablePointer<Float> { input + metas.count * sampleSize }

    func reset() {
        metas.removeAll(keepingCapacity: true)
        job = nil
        error = nil
    }
}
