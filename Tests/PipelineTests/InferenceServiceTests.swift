import Foundation
import Testing
@testable import Pipeline
import Output

/// The pipeline with one inference service for every input: failures at each stage, mixed
/// batches, order, bounded memory, and the end of the run.
@Suite struct InferenceServiceTests {
    func options(batch: Int, jobs: Int) -> PipelineOptions {
        var o = PipelineOptions()
        o.batchSize = batch
        o.jobs = jobs
        o.topK = 1
        o.maxLatency = 0.05
        o.emit = EmitOptions(labels: true, embedding: true)
        return o
    }

    /// A fault injected at one stage of the input named "bad"; the other inputs must complete.
    enum Fault: String, CaseIterable {
        case open, read, makeWriter, write, makeSink, sinkWrite, sinkFinish, processor
    }

    @Test(arguments: Fault.allCases, [1, 3])
    func aThrowingStageFailsOnlyItsInput(fault: Fault, jobs: Int) throws {
        let goodSinks = [MemorySink(), MemorySink()]
        let badSink = MemorySink()
        var bad = InputPlan(
            name: "bad",
            openReader: {
                if fault == .open { throw FakeFailure(description: "no such file") }
                return FakeReader(count: 12, failAfter: fault == .read ? 5 : nil)
            },
            makeWriter: {
                if fault == .makeWriter { throw FakeFailure(description: "no scaler for this format") }
                return fault == .write ? ThrowingWriter(failAt: 5) : FakeWriter(sampleSize: 4)
            },
            makeSink: {
                switch fault {
                case .makeSink: throw FakeFailure(description: "cannot create files")
                case .sinkWrite: return ThrowingSink(failOnWrite: 5)
                case .sinkFinish: return ThrowingSink(failOnFinish: true)
                default: return badSink
                }
            })
        if fault == .processor { bad.makeProcessors = { [FailingProcessor(at: 5)] } }
        var plans = [plan("good0", reader: { FakeReader(count: 20, delay: 100) }, sink: goodSinks[0]), bad,
                     plan("good1", reader: { FakeReader(count: 17, delay: 100) }, sink: goodSinks[1])]
        plans.swapAt(0, 1)
        let p = Pipeline(runner: FakeRunner(), options: options(batch: 4, jobs: jobs), stdout: nil, log: { _ in })
        let report = p.run(plans)
        let outcome = report.inputs.first { $0.name == "bad" }!
        #expect(outcome.error != nil, "\(fault)")
        #expect(report.failedInputs == 1, "\(fault): \(report.inputs.map { $0.error ?? "ok" })")
        #expect(goodSinks[0].records.map(\.frame) == Array(0..<20))
        #expect(goodSinks[1].records.map(\.frame) == Array(0..<17))
        if [.read, .write].contains(fault) {
            // Frames before the damage are kept, in order.
            #expect(badSink.records.map(\.frame) == Array(0..<5), "\(fault)")
        }
    }

    @Test(arguments: [1, 3])
    func aModelFailureFailsTheInputsOfThatBatch(jobs: Int) {
        let sinks = (0..<3).map { _ in MemorySink() }
        let runner = ScriptedRunner(failOn: 1)
        let p = Pipeline(runner: runner, options: options(batch: 4, jobs: jobs), stdout: nil, log: { _ in })
        let report = p.run(sinks.enumerated().map { n, s in plan("in\(n)", reader: { FakeReader(count: 10) }, sink: s) })
        let failed = report.inputs.filter { $0.error != nil }
        #expect(!failed.isEmpty)
        #expect(failed.allSatisfy { $0.error!.contains("inference failed: primitive execution failed") })
        // Whatever was written stays in frame order, and batch 0 (4 frames) got through.
        for s in sinks { #expect(s.records.map(\.frame) == Array(0..<s.records.count)) }
        #expect(sinks.reduce(0) { $0 + $1.records.count } >= 4)
    }

    @Test(arguments: [1, 4])
    func inputsShareBatchesAndKeepTheirOwnOrder(batch: Int) {
        let sinks = (0..<4).map { _ in MemorySink() }
        let p = Pipeline(runner: FakeRunner(), options: options(batch: max(batch, 4) * 2, jobs: 4), stdout: nil, log: { _ in })
        let report = p.run(sinks.enumerated().map { n, s in
            plan("in\(n)", reader: { FakeReader(count: 30 + n, delay: 300) }, sink: s)
        })
        #expect(report.failedInputs == 0)
        #expect(report.mixedBatches > 0)
        for (n, s) in sinks.enumerated() {
            #expect(s.records.map(\.frame) == Array(0..<(30 + n)))
            #expect(s.records.map(\.top) == (0..<(30 + n)).map { $0 % 5 })
            #expect(s.finishedWith == .some(nil))
        }
    }

    @Test func twoPipelinesOnOneServiceMixBatches() {
        let service = InferenceService(runner: FakeRunner(), batchSize: 8, maxLatency: 0.05)
        let sinks = [MemorySink(), MemorySink()]
        let group = DispatchGroup()
        final class Reports: @unchecked Sendable { var all: [PipelineReport] = []; let lock = NSLock() }
        let reports = Reports()
        for (n, s) in sinks.enumerated() {
            let p = Pipeline(service: service, options: options(batch: 8, jobs: 1), stdout: nil, log: { _ in })
            group.enter()
            Thread.detachNewThread {  // as the daemon's workers do: a thread each
                let r = p.run([plan(n == 0 ? "file" : "cam", reader: { FakeReader(count: 200, delay: 1000) }, sink: s, live: n == 1)])
                reports.lock.lock(); reports.all.append(r); reports.lock.unlock()
                group.leave()
            }
        }
        group.wait()
        service.shutdown()
        #expect(service.batchCounts.mixed > 0)
        for s in sinks { #expect(s.records.map(\.frame) == Array(0..<200)) }
    }

    @Test(arguments: [1, 4])
    func aSlowSinkKeepsFramesInFlightBounded(jobs: Int) {
        let counter = LiveCounter()
        var o = options(batch: 4, jobs: jobs)
        o.frameLinkCapacity = 5
        let sinks = (0..<jobs).map { _ in MemorySink(slow: 300) }
        let p = Pipeline(runner: FakeRunner(), options: o, stdout: nil, log: { _ in })
        let report = p.run(sinks.enumerated().map { n, s in
            plan("long\(n)", reader: { FakeReader(count: 200, counter: counter) }, sink: s)
        })
        #expect(report.failedInputs == 0)
        // The links share the budget of 5 (each input at least 2); per input one frame being
        // pushed and one waiting for a slot besides.
        #expect(counter.maxLive <= max(5, jobs * 2) + jobs * 2)
    }

    @Test func runReturnsOnlyAfterTheModelCallInProgress() {
        let runner = ScriptedRunner(delay: 400_000)
        let p = Pipeline(runner: runner, options: options(batch: 2, jobs: 1), stdout: nil, log: { _ in })
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.1) { p.cancel() }
        let report = p.run([plan("x", reader: { FakeReader(count: 1000) }, sink: MemorySink())])
        #expect(report.cancelled)
        #expect(!runner.inside)
    }

    @Test func runReturnsOnlyAfterABlockedReadReturns() {
        let reader = StubbornReader()
        let p = Pipeline(runner: FakeRunner(), options: options(batch: 2, jobs: 1), stdout: nil, log: { _ in })
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.1) { p.cancel() }
        _ = p.run([plan("x", reader: { reader }, sink: MemorySink())])
        #expect(!reader.inside)
    }

    @Test func filterDropsFramesAndProcessorHoldsOneBack() {
        let sink = MemorySink()
        var pl = plan("x", reader: { FakeReader(count: 10) }, sink: sink)
        pl.makeFilter = { OddFilter() }
        pl.makeProcessors = { [DelayByOne()] }
        let p = Pipeline(runner: FakeRunner(), options: options(batch: 3, jobs: 1), stdout: nil, log: { _ in })
        let report = p.run([pl])
        #expect(report.failedInputs == 0)
        // Odd frames dropped after scaling; the processor emits each frame when the next arrives,
        // the last one at the end, plus one extra record (frame -1) at the end.
        #expect(sink.records.map(\.frame) == [0, 2, 4, 6, 8, -1])
    }
}

/// Keeps even frames (looks at the scaled sample, which `FakeWriter` fills with the index).
final class OddFilter: SampleFilter {
    func keep(_ sample: UnsafeBufferPointer<Float>, meta: FrameMeta) -> Bool { Int(sample[0]) % 2 == 0 }
}

/// Holds one frame back (one frame of lookahead) and adds a summary record at the end.
final class DelayByOne: ResultProcessor {
    var held: FrameResult?
    func process(_ r: FrameResult, emit: (FrameResult) throws -> Void) throws {
        if let h = held { try emit(h) }
        held = r
    }
    func finish(_ end: InputEnd, emit: (FrameResult) throws -> Void) throws {
        if let h = held { try emit(h) }
        try emit(FrameResult(meta: FrameMeta(index: -1, pts: 0, keyframe: false), labels: [], embedding: []))
    }
}

/// Throws at frame `at`.
final class FailingProcessor: ResultProcessor {
    let at: Int
    init(at: Int) { self.at = at }
    func process(_ r: FrameResult, emit: (FrameResult) throws -> Void) throws {
        if r.meta.index == at { throw FakeFailure(description: "segment state broken") }
        try emit(r)
    }
    func finish(_ end: InputEnd, emit: (FrameResult) throws -> Void) throws {}
}
