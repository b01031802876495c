import Foundation

/// A reusable batch owned by the inference service: scale stages of any inputs write samples into
/// reserved slots in place, the infer stage writes model outputs, the label stage reads them, then
/// the batch goes back to the service's pool. Allocated once per service.
final class Batch: @unchecked Sendable {
    /// One slot: whose frame it holds and whether its sample is written yet.
    struct Entry {
        enum State { case reserved, written, dropped }
        let route: InputRoute
        let meta: FrameMeta
        var state: State
    }

    let capacity: Int
    let sampleSize: Int
    let input: UnsafeMutablePointer<Float>
    let embeddings: UnsafeMutablePointer<Float>?
    let logits: UnsafeMutablePointer<Float>?
    let embeddingDim: Int
    let classCount: Int
    var entries: [Entry] = []
    /// Inputs' gaps and ends that follow this batch's frames.
    var eventsAfter: [(route: InputRoute, event: InputEvent)] = []
    /// When the first slot was reserved (uptime nanoseconds).
    var openedAt: UInt64 = 0
    /// Set by the infer stage when the model failed on this batch.
    var error: String?

    var count: Int { entries.count }
    var isFull: Bool { entries.count == capacity }
    /// No slot is still being written.
    var isComplete: Bool { !entries.contains { $0.state == .reserved } }
    var writtenCount: Int { entries.reduce(0) { $0 + ($1.state == .written ? 1 : 0) } }
    /// Distinct inputs with frames here.
    var inputCount: Int { Set(entries.map { ObjectIdentifier($0.route) }).count }

    init(capacity: Int, sampleSize: Int, embeddingDim: Int, classCount: Int) {
        self.capacity = capacity
        self.sampleSize = sampleSize
        self.embeddingDim = embeddingDim
        self.classCount = classCount
        input = .allocate(capacity: capacity * sampleSize)
        input.initialize(repeating: 0, count: capacity * sampleSize)
        embeddings = embeddingDim > 0 ? .allocate(capacity: capacity * embeddingDim) : nil
        logits = classCount > 0 ? .allocate(capacity: capacity * classCount) : nil
        entries.reserveCapacity(capacity)
    }

    deinit {
        input.deallocate(); embeddings?.deallocate(); logits?.deallocate()
    }

    func slot(_ i: Int) -> UnsafeMutablePointer<Float> { input + i * sampleSize }

    func reset() {
        entries.removeAll(keepingCapacity: true)
        eventsAfter.removeAll()
        error = nil
        openedAt = 0
    }
}
