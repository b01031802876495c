import Testing
@testable import Pipeline

/// The batching logic without threads: slots, sealing, order of batches and ends.
@Suite struct BatcherStateTests {
    func pool(_ n: Int, batch: Int) -> [Batch] {
        (0..<n).map { _ in Batch(capacity: batch, sampleSize: 1, embeddingDim: 0, classCount: 0) }
    }
    func route(_ name: String) -> InputRoute {
        InputRoute(name: name, eventCapacity: 4, labeler: Labeler(names: nil, topK: 0, minScore: 0))
    }
    func meta(_ i: Int) -> FrameMeta { FrameMeta(index: i, pts: Double(i), keyframe: false) }

    /// Reserves and commits one frame for `r` (its turn is immediate: one request at a time).
    func put(_ s: inout BatcherState, _ r: InputRoute, _ i: Int, now: UInt64 = 0) -> BatcherState.Slot? {
        let t = s.request(key: now)
        guard let slot = s.grant(t, route: r, meta: meta(i), now: now) else { s.withdraw(t); return nil }
        s.commit(slot, kept: true)
        return slot
    }

    func frames(_ item: BatcherState.Item?) -> [String] {
        guard case .batch(let b)? = item else { return [] }
        return b.entries.map { "\($0.route.name)\($0.meta.index)" }
    }

    @Test func framesOfTwoInputsShareABatchInReservationOrder() {
        var s = BatcherState(pool: pool(3, batch: 4), policy: .throughput, maxLatency: 1)
        let a = route("a"), b = route("b")
        s.addProducer(); s.addProducer()
        for i in 0..<3 { _ = put(&s, a, i); _ = put(&s, b, i) }
        // Full batch sealed at the 4th slot; the next is open with 2 frames.
        #expect(frames(s.next(now: 0)) == ["a0", "b0", "a1", "b1"])
        #expect(s.next(now: 0) == nil)  // open batch: not full, not due, producers left
        #expect(s.mixedBatches == 1 && s.batches == 1)
        // Latency cap passes: the partial batch goes.
        #expect(frames(s.next(now: 1_000_000_001)) == ["a2", "b2"])
    }

    @Test func endMidBatchFollowsTheBatchHoldingTheLastFrame() {
        var s = BatcherState(pool: pool(3, batch: 4), policy: .throughput, maxLatency: 10)
        let a = route("a"), b = route("b")
        s.addProducer(); s.addProducer()
        _ = put(&s, a, 0); _ = put(&s, b, 0)
        s.end(a, .completed)          // a ended mid-batch: its end rides after this batch
        _ = put(&s, b, 1)
        guard case .batch(let first)? = { () -> BatcherState.Item? in s.end(b, .failed("x")); return s.next(now: 0) }() else {
            Issue.record("no producers left: the partial batch must go"); return
        }
        #expect(first.entries.map(\.meta.index) == [0, 0, 1])
        #expect(first.eventsAfter.count == 2)
        #expect(s.next(now: 0) == nil)
    }

    @Test func anEndWithNothingOpenKeepsItsPlaceAfterSealedBatches() {
        var s = BatcherState(pool: pool(3, batch: 2), policy: .throughput, maxLatency: 10)
        let a = route("a"), b = route("b")
        s.addProducer(); s.addProducer()
        _ = put(&s, a, 0); _ = put(&s, a, 1)   // sealed (full)
        s.end(a, .completed)                   // nothing of a open: queued after that batch
        _ = put(&s, b, 0)
        #expect(frames(s.next(now: 0)) == ["a0", "a1"])
        guard case .event(let r, .end(.completed))? = s.next(now: 0) else { Issue.record("expected a's end"); return }
        #expect(r === a)
    }

    @Test func aSealedBatchWaitsForEverySlotToBeWritten() {
        var s = BatcherState(pool: pool(3, batch: 2), policy: .throughput, maxLatency: 10)
        let a = route("a"), b = route("b")
        s.addProducer(); s.addProducer()
        let ta = s.request(key: 0)
        let slotA = s.grant(ta, route: a, meta: meta(0), now: 0)!
        _ = put(&s, b, 0)                      // batch full, but a's sample is still being written
        #expect(s.next(now: 0) == nil)
        s.commit(slotA, kept: false)           // a's frame was dropped after all
        guard case .batch(let batch)? = s.next(now: 0) else { Issue.record("expected the batch"); return }
        #expect(batch.writtenCount == 1)
    }

    @Test func throughputServesRequestsInArrivalOrderLatencyServesEarliestFrame() {
        for policy in BatchPolicy.allCases {
            var s = BatcherState(pool: pool(1, batch: 1), policy: policy, maxLatency: 10)
            let a = route("a"), b = route("b")
            s.addProducer(); s.addProducer()
            _ = put(&s, a, 0)                    // the only batch is now sealed: others must wait
            let ta = s.request(key: 500)         // a asks first, for a frame decoded later
            let tb = s.request(key: 100)
            #expect(s.grant(ta, route: a, meta: meta(1), now: 0) == nil)  // no batch free
            guard case .batch(let done)? = s.next(now: 0) else { Issue.record("expected a batch"); return }
            s.recycle(done)
            let first = policy == .throughput ? ta : tb, second = policy == .throughput ? tb : ta
            #expect(s.grant(second, route: b, meta: meta(0), now: 0) == nil, "not \(policy)'s turn")
            #expect(s.grant(first, route: a, meta: meta(1), now: 0) != nil)
        }
    }

    @Test func latencyPolicySendsAPartialBatchAsSoonAsTheModelIsFree() {
        var s = BatcherState(pool: pool(3, batch: 8), policy: .latency, maxLatency: 10)
        let a = route("a")
        s.addProducer()
        _ = put(&s, a, 0)
        #expect(frames(s.next(now: 0)) == ["a0"])
        var t = BatcherState(pool: pool(3, batch: 8), policy: .throughput, maxLatency: 10)
        t.addProducer()
        _ = put(&t, a, 0)
        #expect(t.next(now: 0) == nil)
    }
}
