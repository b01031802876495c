import Foundation
import Testing
@testable import Pipeline
import Output

@Suite struct PipelineTests {
    func options(batch: Int, jobs: Int = 1) -> PipelineOptions {
        var o = PipelineOptions()
        o.batchSize = batch
        o.jobs = jobs
        o.topK = 1
        o.maxLatency = 60  // batch sizes below are exact: only the end of input flushes a partial batch
        o.emit = EmitOptions(labels: true, embedding: true)
        return o
    }

    @Test(arguments: [1, 7, 16])
    func everyFrameInOrderWithPartialLastBatch(batch: Int) throws {
        let runner = FakeRunner()
        let sink = MemorySink()
        let p = Pipeline(runner: runner, options: options(batch: batch), stdout: nil, log: { _ in })
        let report = p.run([plan("a", reader: { FakeReader(count: 37) }, sink: sink)])
        #expect(report.inputs[0].error == nil)
        #expect(report.inputs[0].framesEmitted == 37)
        #expect(sink.records.map(\.frame) == Array(0..<37))
        #expect(sink.records.map(\.top) == (0..<37).map { $0 % 5 })
        #expect(sink.records[36].embedding == [36, 37, 38])
        #expect(sink.finishedWith == .some(nil))
        // Full batches, then the partial remainder at end of input.
        let expected = Array(repeating: batch, count: 37 / batch) + (37 % batch == 0 ? [] : [37 % batch])
        #expect(runner.batchSizes == expected)
    }

    @Test func failingInputReportsAndOthersComplete() throws {
        var logs: [String] = []
        let lock = NSLock()
        let good1 = MemorySink(), bad = MemorySink(), good2 = MemorySink(), missing = MemorySink()
        let p = Pipeline(runner: FakeRunner(), options: options(batch: 4, jobs: 2), stdout: nil,
                         log: { m in lock.lock(); logs.append(m); lock.unlock() })
        let report = p.run([
            plan("good1", reader: { FakeReader(count: 10) }, sink: good1),
            plan("bad", reader: { FakeReader(count: 10, failAfter: 6) }, sink: bad),
            plan("missing", reader: { throw FakeFailure(description: "no such file") }, sink: missing),
            plan("good2", reader: { FakeReader(count: 9) }, sink: good2),
        ])
        #expect(report.failedInputs == 2)
        #expect(report.inputs.map(\.name) == ["good1", "bad", "missing", "good2"])
        #expect(good1.records.count == 10 && good2.records.count == 9)
        // Frames before the damage are kept; the input is marked failed with the reason.
        #expect(bad.records.map(\.frame) == Array(0..<6))
        #expect(bad.finishedWith == .some("damaged data after frame 6"))
        #expect(report.inputs[2].error == "no such file")
        #expect(logs.sorted() == ["bad: damaged data after frame 6", "missing: no such file"])
    }

    @Test func jobsRunConcurrentlyAndKeepPerInputOrder() {
        let sinks = (0..<4).map { _ in MemorySink() }
        let p = Pipeline(runner: FakeRunner(), options: options(batch: 3, jobs: 2), stdout: nil, log: { _ in })
        let report = p.run(sinks.enumerated().map { n, s in
            plan("in\(n)", reader: { FakeReader(count: 20 + n, delay: 200) }, sink: s)
        })
        #expect(report.failedInputs == 0)
        for (n, s) in sinks.enumerated() { #expect(s.records.map(\.frame) == Array(0..<(20 + n))) }
    }

    @Test func theDecodedFrameBudgetIsSharedByTheInputsRunningAtOnce() {
        var o = PipelineOptions()
        o.frameLinkCapacity = 8
        #expect(o.frameLinkCapacity(concurrentInputs: 1) == 8)
        #expect(o.frameLinkCapacity(concurrentInputs: 4) == 2)
        #expect(o.frameLinkCapacity(concurrentInputs: 8) == 2)   // never below 2
        #expect(o.frameLinkCapacity(concurrentInputs: 0) == 8)
        // Automatic decoder threads: FFmpeg's choice for one input, the cores shared among several.
        #expect(PipelineOptions.decoderThreads(requested: 0, concurrentInputs: 1, cores: 2) == 0)
        #expect(PipelineOptions.decoderThreads(requested: 0, concurrentInputs: 4, cores: 2) == 1)
        #expect(PipelineOptions.decoderThreads(requested: 0, concurrentInputs: 2, cores: 8) == 4)
        #expect(PipelineOptions.decoderThreads(requested: 3, concurrentInputs: 4, cores: 2) == 3)  // the user's word stands
    }

    @Test func slowConsumerBoundsFramesInFlight() {
        let counter = LiveCounter()
        let sink = MemorySink(slow: 300)  // a slow writer
        var o = options(batch: 4)
        o.frameLinkCapacity = 5
        o.batchesPerJob = 2
        let p = Pipeline(runner: FakeRunner(), options: o, stdout: nil, log: { _ in })
        let report = p.run([plan("long", reader: { FakeReader(count: 400, counter: counter) }, sink: sink)])
        #expect(report.inputs[0].framesEmitted == 400)
        // Frames alive at once: at most the link (5), one being pushed, one being written.
        #expect(counter.maxLive <= 5 + 2)
    }

    @Test func queueDepthsShowTheBacklogBehindASlowSink() {
        var o = options(batch: 4)
        o.frameLinkCapacity = 5
        o.batchesPerJob = 2
        let p = Pipeline(runner: FakeRunner(), options: o, stdout: nil, log: { _ in })
        final class Peaks: @unchecked Sendable { var frames = 0, free = Int.max }
        let peaks = Peaks()
        let running = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            _ = p.run([plan("slow", reader: { FakeReader(count: 200) }, sink: MemorySink(slow: 2_000))])
            running.signal()
        }
        while running.wait(timeout: .now() + 0.02) == .timedOut {
            let d = p.queueDepths
            peaks.frames = max(peaks.frames, d["frames"] ?? 0)
            peaks.free = min(peaks.free, d["free_batches"] ?? Int.max)
        }
        // The slow sink backs everything up: the frame link fills and every batch buffer is in use.
        #expect(peaks.frames == 5)
        #expect(peaks.free == 0)
    }

    @Test func stdoutLinesAreCompleteJSONAndStopQuietlyWhenReaderCloses() throws {
        var pair: [Int32] = [0, 0]
        #expect(pipe(&pair) == 0)
        let fds = pair
        LineWriter.ignoreSIGPIPE()
        let writer = LineWriter(fd: fds[1])
        // Read three lines, then close the read end (like `| head -3`).
        let reader = DispatchQueue(label: "reader")
        final class Box: @unchecked Sendable { var data = Data() }
        let box = Box()
        let readDone = DispatchSemaphore(value: 0)
        reader.async {
            let h = FileHandle(fileDescriptor: fds[0], closeOnDealloc: false)
            while box.data.split(separator: UInt8(ascii: "\n")).count < 3 {
                let d = h.availableData
                if d.isEmpty { break }
                box.data.append(d)
            }
            close(fds[0])
            readDone.signal()
        }
        let p = Pipeline(runner: FakeRunner(), options: options(batch: 2), stdout: writer, log: { _ in })
        let report = p.run([InputPlan(name: "x", openReader: { FakeReader(count: 100_000) },
                                      makeWriter: { FakeWriter(sampleSize: 4) })])
        readDone.wait()
        close(fds[1])
        #expect(report.outputClosed)
        #expect(report.inputs[0].framesEmitted < 100_000)
        let lines = box.data.split(separator: UInt8(ascii: "\n"))
        let first = try JSONSerialization.jsonObject(with: Data(lines[0])) as? [String: Any]
        #expect(first?["frame"] as? Int == 0)
        #expect(first?["input"] as? String == "x")
        #expect((first?["embedding"] as? [Double]) == [0, 1, 2])
    }

    @Test func cancelStopsAndAbandonsFiles() {
        let sink = MemorySink()
        let p = Pipeline(runner: FakeRunner(), options: options(batch: 4), stdout: nil, log: { _ in })
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { p.cancel() }
        let report = p.run([plan("endless", reader: { FakeReader(count: Int.max, delay: 100) }, sink: sink)])
        #expect(report.cancelled)
        #expect(sink.abandoned)
    }

    @Test func liveDropsReachTheSinkWhileTheInputRuns() {
        // A live input read much faster than the (slow) model: the 2-frame link drops the oldest.
        // The sink hears of the drops in-band, as they happen (the service's live drop counter
        // reads them there), and no frame is lost uncounted: written + dropped = read (the end
        // marker used to evict a last frame after the counts were taken).
        let sink = MemorySink()
        var o = options(batch: 4)
        o.frameLinkCapacity = 2
        o.maxLatency = 0.01
        let p = Pipeline(runner: ScriptedRunner(delay: 20_000), options: o, stdout: nil, log: { _ in })
        let report = p.run([plan("cam", reader: { FakeReader(count: 300, delay: 500) }, sink: sink, live: true)])
        let out = report.inputs[0]
        #expect(out.framesDropped > 0)
        #expect(sink.notedDrops > 0)
        #expect(sink.notedDrops == out.framesDropped)  // every drop, the last ones too
        #expect(sink.records.count + out.framesDropped == 300, "written \(sink.records.count), dropped \(out.framesDropped)")
    }

    @Test func liveInputFlushesPartialBatchAfterMaxLatency() {
        let runner = FakeRunner()
        let sink = MemorySink()
        var o = options(batch: 16)
        o.maxLatency = 0.05
        let p = Pipeline(runner: runner, options: o, stdout: nil, log: { _ in })
        // 6 frames, 30 ms apart: a 16-frame batch would never fill; latency flushes go out instead.
        let report = p.run([plan("cam", reader: { FakeReader(count: 6, delay: 30_000) }, sink: sink, live: true)])
        #expect(report.inputs[0].framesEmitted == 6)
        #expect(runner.batchSizes.count > 1)
        #expect(runner.batchSizes.allSatisfy { $0 < 16 })
    }
}
