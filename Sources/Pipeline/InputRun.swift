import Foundation
import Output

/// A decoded frame on its way from the decode stage to the scale stage, or the input's end.
enum FrameItem {
    case frame(PipelineFrame, decodedAt: UInt64)
    case end(InputEnd)
}

/// One input in flight: its plan, its three stages (decode, scale, output), the links between
/// them, and its state.
///
/// ```
///  decode ──frame link──▶ scale (+ filter) ──slots──▶ InferenceService ──event link──▶ output
/// ```
/// - decode: a DispatchQueue of its own; owns the `FrameReader`; blocks when the frame link is
///   full (files) or drops the oldest frame (live), the drops reaching the output as a `.gap`.
/// - scale: a DispatchQueue of its own; owns the `SampleWriter` (and the `SampleFilter`, if
///   any); waits for a slot in the service's open batch and writes the sample straight into it.
/// - output: a DispatchQueue of its own (`OutputStage`); owns the sink.
final class InputRun: @unchecked Sendable {
    /// The input's life: states are entered in this order (a failed open goes from `.opening`
    /// to `.draining`); how it ended travels in-band as `InputEnd`.
    enum Phase: Int, Comparable {
        case waiting, opening, running, draining, finished
        static func < (a: Phase, b: Phase) -> Bool { a.rawValue < b.rawValue }
    }

    let number: Int
    let plan: InputPlan
    let route: InputRoute
    let frameLink: BoundedLink<FrameItem>
    private let service: InferenceService
    private let stats: PipelineStats
    private let lock = NSLock()
    private var reader: FrameReader?
    private var _phase = Phase.waiting
    private var _cancelled = false
    private var _failure: String?
    private var _counts = (decoded: 0, errors: 0, dropped: 0)
    private var _emitted = 0
    private var _lastPts = 0.0

    init(number: Int, plan: InputPlan, service: InferenceService, options: PipelineOptions, stats: PipelineStats,
         concurrentInputs: Int = 1) {
        self.number = number
        self.plan = plan
        self.service = service
        self.stats = stats
        frameLink = BoundedLink(name: "frames-\(number)", capacity: options.frameLinkCapacity(concurrentInputs: concurrentInputs),
                                policy: plan.live ? .dropOldest : .block)
        route = InputRoute(name: plan.name, eventCapacity: max(2 * options.batchSize, 8),
                           labeler: Labeler(names: options.labelNames, topK: options.emit.labels ? options.topK : 0,
                                            minScore: options.minScore))
    }

    // MARK: state (any thread)

    var phase: Phase { lock.lock(); defer { lock.unlock() }; return _phase }

    /// Moves forward only: a stage reporting a phase already passed is ignored.
    func advance(to next: Phase) {
        lock.lock(); if next > _phase { _phase = next }; lock.unlock()
    }

    var isCancelled: Bool { lock.lock(); defer { lock.unlock() }; return _cancelled }
    var failure: String? { lock.lock(); defer { lock.unlock() }; return _failure }
    var duration: Double? { lock.lock(); defer { lock.unlock() }; return reader?.duration }
    var emitted: Int { lock.lock(); defer { lock.unlock() }; return _emitted }
    var lastPts: Double { lock.lock(); defer { lock.unlock() }; return _lastPts }
    var counts: (decoded: Int, errors: Int, dropped: Int) { lock.lock(); defer { lock.unlock() }; return _counts }

    func didEmit(pts: Double) { lock.lock(); _emitted += 1; _lastPts = pts; lock.unlock() }

    /// Records the first failure and stops reading (what was read still drains).
    func fail(_ message: String) {
        lock.lock(); if _failure == nil { _failure = message }; let r = reader; lock.unlock()
        if let r { r.cancel() } else { plan.cancelOpen?() }
    }

    /// Stops reading without failing the input (the scale stage ends it in-band instead).
    func stopReading() {
        lock.lock(); let r = reader; lock.unlock()
        if let r { r.cancel() } else { plan.cancelOpen?() }
    }

    /// Stops the input now: reader interrupted, links cancelled, a producer waiting for a slot woken.
    func cancel() {
        lock.lock(); _cancelled = true; let r = reader; lock.unlock()
        if let r { r.cancel() } else { plan.cancelOpen?() }
        frameLink.cancel()
        route.events.cancel()
        service.wake()
    }

    // MARK: stages

    /// Starts the three stages; `group` is left by each when its thread is done.
    func start(group: DispatchGroup, output: OutputStage) {
        service.register(route)
        for (name, body) in [("decode", decodeLoop), ("scale", scaleLoop), ("output", output.run)] as [(String, () -> Void)] {
            group.enter()
            DispatchQueue(label: "framepipe.\(name).\(number)", qos: .userInitiated).async {
                body()
                group.leave()
            }
        }
    }

    private func decodeLoop() {
        advance(to: .opening)
        let r: FrameReader
        do {
            r = try stats.decode.measure(items: 0) { try plan.openReader() }
        } catch {
            finishReading(nil, end: .failed("\(error)"))
            return
        }
        lock.lock(); reader = r; let stop = _cancelled || _failure != nil; lock.unlock()
        if stop { r.cancel() }
        advance(to: .running)
        var end = InputEnd.completed
        while true {
            if isCancelled { end = .cancelled; break }
            do {
                guard let frame = try stats.decode.measure(items: 0, { try r.next() }) else { break }
                stats.decode.count(1)
                if !frameLink.push(.frame(frame, decodedAt: DispatchTime.now().uptimeNanoseconds)) { end = .cancelled; break }
            } catch {
                end = isCancelled ? .cancelled : .failed("\(error)")
                break
            }
        }
        finishReading(r, end: end)
    }

    private func finishReading(_ r: FrameReader?, end: InputEnd) {
        lock.lock()
        _counts = (r?.framesDecoded ?? 0, r?.decodeErrors ?? 0, frameLink.drops)
        lock.unlock()
        advance(to: .draining)
        frameLink.push(.end(end), mayDrop: false)  // waits for room: the counts above stay final
        frameLink.close()
    }

    private func scaleLoop() {
        var writer: SampleWriter?
        let filter = plan.makeFilter?()
        let sampleSize = service.runner.sampleSize
        var scratch = filter == nil ? [] : [Float](repeating: 0, count: sampleSize)
        var reportedDrops = 0
        var end = InputEnd.cancelled
        // A scaling failure ends the input in-band, after the frames already sent.
        var scaleFailure: String?
        loop: while true {
            guard case .item(let item) = frameLink.pop() else { break }
            switch item {
            case .end(let e):
                if frameLink.drops > reportedDrops { service.note(route, .gap(dropped: frameLink.drops - reportedDrops)) }
                end = e
                break loop
            case .frame(let frame, let decodedAt):
                if failure != nil || scaleFailure != nil { continue }  // drain quietly after a failure
                let drops = frameLink.drops
                if drops > reportedDrops {
                    service.note(route, .gap(dropped: drops - reportedDrops))
                    reportedDrops = drops
                }
                do {
                    if writer == nil { writer = try plan.makeWriter() }
                    if let filter {
                        try scratch.withUnsafeMutableBufferPointer { buf in
                            try stats.scale.measure { try writer!.write(frame, to: buf.baseAddress!) }
                        }
                        let keep = scratch.withUnsafeBufferPointer { filter.keep($0, meta: frame.meta) }
                        if !keep { continue }
                    }
                    guard let slot = service.reserve(for: route, meta: frame.meta, decodedAt: decodedAt,
                                                     cancelled: { self.isCancelled }) else { break loop }
                    do {
                        if filter != nil {
                            scratch.withUnsafeBufferPointer { slot.pointer.update(from: $0.baseAddress!, count: sampleSize) }
                        } else {
                            try stats.scale.measure { try writer!.write(frame, to: slot.pointer) }
                        }
                        service.commit(slot, kept: true)
                    } catch {
                        service.commit(slot, kept: false)
                        throw error
                    }
                } catch {
                    scaleFailure = "\(error)"
                    stopReading()
                }
            }
        }
        if isCancelled { end = .cancelled }
        service.end(route, (scaleFailure ?? failure).map { .failed($0) } ?? end)
    }
}

/// Busy time per stage for one pipeline's inputs.
final class PipelineStats: Sendable {
    let decode = StageStats(name: "decode")
    let scale = StageStats(name: "scale")
    let emit = StageStats(name: "emit")
}
