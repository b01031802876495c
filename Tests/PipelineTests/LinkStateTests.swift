import Testing
@testable import Pipeline

@Suite struct LinkStateTests {
    @Test func fifoOrderAndCapacity() {
        var s = LinkState<Int>(capacity: 3)
        for i in 0..<3 { guard case .accepted = s.offer(i) else { Issue.record("not accepted"); return } }
        guard case .full = s.offer(9) else { Issue.record("should be full"); return }
        for i in 0..<3 {
            guard case .item(let v) = s.take() else { Issue.record("expected item"); return }
            #expect(v == i)
        }
        guard case .empty = s.take() else { Issue.record("expected empty"); return }
        #expect(s.highWater == 3)
    }

    @Test func wrapsAround() {
        var s = LinkState<Int>(capacity: 2)
        var out: [Int] = []
        for i in 0..<7 {
            _ = s.offer(i)
            if case .item(let v) = s.take() { out.append(v) }
        }
        #expect(out == Array(0..<7))
    }

    @Test func closeDrainsThenFinishes() {
        var s = LinkState<Int>(capacity: 2)
        _ = s.offer(1)
        s.close()
        guard case .item(1) = s.take() else { Issue.record("should drain"); return }
        guard case .finished = s.take() else { Issue.record("should finish"); return }
    }

    @Test func dropOldestKeepsNewestAndCounts() {
        var s = LinkState<Int>(capacity: 2, policy: .dropOldest)
        _ = s.offer(1); _ = s.offer(2)
        guard case .dropped(1) = s.offer(3) else { Issue.record("should drop 1"); return }
        #expect(s.drops == 1)
        guard case .item(2) = s.take(), case .item(3) = s.take() else { Issue.record("order"); return }
    }

    @Test func anItemThatMayNotDropWaitsEvenOnADroppingLink() {
        var s = LinkState<Int>(capacity: 2, policy: .dropOldest)
        _ = s.offer(1); _ = s.offer(2)
        guard case .full = s.offer(99, mayDrop: false) else { Issue.record("should wait for room"); return }
        #expect(s.drops == 0)
        guard case .item(1) = s.take() else { Issue.record("order"); return }
        guard case .accepted = s.offer(99, mayDrop: false) else { Issue.record("should fit now"); return }
    }

    @Test func cancelRejectsAndReturnsQueued() {
        var s = LinkState<Int>(capacity: 3)
        _ = s.offer(1); _ = s.offer(2)
        #expect(s.cancel() == [1, 2])
        guard case .rejected = s.offer(3) else { Issue.record("should reject"); return }
        guard case .finished = s.take() else { Issue.record("should finish"); return }
    }
}
