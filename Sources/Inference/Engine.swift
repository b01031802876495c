import CDNNL
import Foundation

/// Runs a `Model` with oneDNN on the CPU: batches of NCHW float images in, embeddings and logits out.
///
/// Not thread-safe: use each engine from one DispatchQueue. Weights are reordered once (at the
/// first compile) and the primitives for each batch size are built once and cached; `run`
/// allocates nothing. GNU OpenMP keeps one worker pool per calling thread, so a dedicated
/// thread (or a serial queue that mostly stays on one thread) avoids extra idle pools.
///
/// Fusions: Relu/Clip after a convolution and a residual Add become post-ops; a 1x1 convolution
/// and the 3x3 depthwise one after it run as one primitive where oneDNN has a fused kernel.
/// Layouts: chosen per precision and instruction set by `FormatPlan` (nChw8c for fp32 below
/// AVX-512, nChw16c on AVX-512, oneDNN's own choice for bf16 with AMX). `compiledLayers(batch:)`
/// says which oneDNN implementation runs each layer; `referenceLayers` lists any that fell back
/// to a reference (`ref:`) kernel, which callers report.
public final class Engine {
    /// The model this engine runs.
    public let model: Model
    /// The compute precision.
    public let precision: Precision
    /// The largest `count` accepted by `run`.
    public let maxBatch: Int
    /// oneDNN (OpenMP) threads used by this engine's calls, or nil for the process default.
    public let threads: Int?

    /// The formats used (FormatPlan's row for this precision on `Engine.isa`).
    public let plan: FormatPlan
    /// Inference streams: with 2, each of two dedicated threads runs half of every batch on its own
    /// single-threaded primitives (no OpenMP barrier per layer); with 1, one run uses `threads`
    /// OpenMP threads. Chosen by `Engine.streams(threads:maxBatch:environment:)`.
    public let streams: Int

    private let context: DNNLContext
    private let lowered: LoweredGraph
    private let weights = WeightCache()
    private let arena = Arena()
    private var networks: [Int: Network] = [:]
    /// With `streams > 1`: one single-threaded engine per stream, each owned by its own thread.
    private var lanes: [(thread: LaneThread, engine: Engine)] = []

    /// Creates an engine and compiles the network for `maxBatch` (weights are reordered now).
    ///
    /// - Throws: `InferenceError` when bf16 is asked for on a CPU without bf16 support, or when
    ///   oneDNN cannot build a primitive for a node (the error names the node).
    public convenience init(model: Model, precision: Precision = .fp32, maxBatch: Int, threads: Int? = nil) throws {
        try self.init(model: model, precision: precision, maxBatch: maxBatch, threads: threads,
                      streams: Engine.streams(threads: threads, maxBatch: maxBatch,
                                              environment: ProcessInfo.processInfo.environment))
    }

    init(model: Model, precision: Precision, maxBatch: Int, threads: Int?, streams: Int) throws {
        precondition(maxBatch > 0, "maxBatch must be positive")
        self.model = model
        self.precision = precision
        self.maxBatch = maxBatch
        self.threads = threads
        self.streams = streams
        guard let plan = FormatPlan.plan(for: precision, on: Engine.isa, environment: ProcessInfo.processInfo.environment) else {
            let need = precision == .bf16 ? "AVX512-BF16 or AMX" : FormatPlan.minimumISA(for: precision)?.name ?? "another CPU"
            throw InferenceError(source: model.source, reason: "\(precision.rawValue) needs a CPU with \(need) (oneDNN reports \(Engine.cpuISA)); use --precision fp32")
        }
        self.plan = plan
        if precision == .int8 && ProcessInfo.processInfo.environment["FRAMEPIPE_INT8_UNFINISHED"] != "1" {
            // Network+Int8.swift compiles and runs without reference kernels, but its results are
            // not yet those of the QDQ graph (issue #12): refused until they are.
            throw InferenceError(source: model.source, reason: "int8 is not finished: its results differ from the QDQ model's (issue #12); use --precision fp32, which runs a QDQ model with its weights dequantized")
        }
        if precision == .int8 && model.graph.quantization.isEmpty {
            throw InferenceError(source: model.source, reason: "int8 needs a quantized model (QDQ ONNX: QuantizeLinear/DequantizeLinear pairs); make one with `framepipe quantize`, or use --precision fp32")
        }
        do { context = try DNNLContext() } catch {
            throw InferenceError(source: model.source, reason: "\(error)")
        }
        lowered = try LoweredGraph(model: model)
        _ = try network(maxBatch)
        if streams > 1 {
            let half = (maxBatch + streams - 1) / streams
            for _ in 0..<streams {
                let thread = LaneThread()
                nonisolated(unsafe) var made: Result<Engine, Error>!
                thread.run {
                    made = Result { try Engine(model: model, precision: precision, maxBatch: half, threads: 1, streams: 1) }
                }
                lanes.append((thread, try made.get()))
            }
        }
    }

    deinit { for lane in lanes { lane.thread.stop() } }

    /// How many inference streams an engine uses: `FRAMEPIPE_INFER_STREAMS` (1 or 2) when set,
    /// otherwise 2 when it has exactly 2 threads (explicit, `setInferenceThreads`, or OpenMP's
    /// default) and a batch of at least 2, else 1. Two streams keep the thread total: each has 1.
    public static func streams(threads: Int?, maxBatch: Int, environment: [String: String]) -> Int {
        let total = threads ?? InferenceThreads.defaultCount ?? InferenceThreads.current ?? 1
        if let v = environment["FRAMEPIPE_INFER_STREAMS"], let n = Int(v), n >= 1 {
            return min(n, total, maxBatch)
        }
        return total == 2 && maxBatch >= 2 ? defaultStreams : 1
    }

    /// Streams used for a 2-thread engine when `FRAMEPIPE_INFER_STREAMS` is not set.
    static let defaultStreams = 1

    /// True when oneDNN can run bf16 natively on this CPU (AVX512-BF16 or AMX).
    public static var supportsBF16: Bool { FormatPlan.plan(for: .bf16, on: isa) != nil }

    /// The instruction set oneDNN dispatches to, honouring `ONEDNN_MAX_CPU_ISA`.
    public static var isa: CPUISA { CPUISA.effective }

    /// The oneDNN library version, e.g. `"2.6.3"` (`dnnl_version`).
    public static var oneDNNVersion: String {
        let v = dnnl_version()!.pointee
        return "\(v.major).\(v.minor).\(v.patch)"
    }

    /// The instruction set oneDNN dispatches to (e.g. `"avx512_core_amx"`), honouring `ONEDNN_MAX_CPU_ISA`.
    public static var cpuISA: String { isa.name }

    /// The compiled network for `count` images, built on first use and cached.
    private func network(_ count: Int) throws -> Network {
        if let n = networks[count] { return n }
        InferenceThreads.apply(threads)
        let n = try Network(model: model, lowered: lowered, batch: count, plan: plan, context: context,
                            weights: weights, arena: arena)
        networks[count] = n
        for other in networks.values { try other.rebind(arena) }
        return n
    }

    /// Runs `count` images.
    ///
    /// - Parameters:
    ///   - input: `count * C * H * W` floats, NCHW (the model's preprocessing already applied).
    ///   - count: 1...maxBatch.
    ///   - embeddings: receives `count * embeddingDim` floats, or nil to skip.
    ///   - logits: receives `count * classCount` raw logits, or nil to skip (ignored if the model has none).
    public func run(input: UnsafePointer<Float>, count: Int,
                    embeddings: UnsafeMutablePointer<Float>?, logits: UnsafeMutablePointer<Float>?) throws {
        precondition(count > 0 && count <= maxBatch, "count \(count) outside 1...\(maxBatch)")
        if lanes.count > 1 && count >= lanes.count {
            try runLanes(input: input, count: count, embeddings: embeddings, logits: logits)
            return
        }
        let net = try network(count)
        InferenceThreads.apply(threads)
        do {
            try net.input.bind(UnsafeMutableRawPointer(mutating: input))
            for step in net.steps { try execute(step) }
            if let embeddings {
                try net.embedding.bind(embeddings)
                try execute(net.embeddingStep)
            }
            if let logits, let mem = net.logits, let step = net.logitsStep {
                try mem.bind(logits)
                try execute(step)
            }
            try context.wait()
        } catch let failure as DNNLFailure {
            throw InferenceError(source: model.source, reason: failure.description)
        }
    }

    /// Splits the batch into one contiguous share per stream and runs the shares at once, each on
    /// its stream's thread (the first shares get the remainder).
    private func runLanes(input: UnsafePointer<Float>, count: Int,
                          embeddings: UnsafeMutablePointer<Float>?, logits: UnsafeMutablePointer<Float>?) throws {
        let imageSize = model.inputShape.reduce(1, *)
        let embeddingDim = model.embeddingDim, classCount = model.classCount
        var first = 0
        var failures = [Error?](repeating: nil, count: lanes.count)
        try failures.withUnsafeMutableBufferPointer { failed in
            nonisolated(unsafe) let failed = failed
            for (i, lane) in lanes.enumerated() {
                let share = count / lanes.count + (i < count % lanes.count ? 1 : 0)
                nonisolated(unsafe) let inp = input + first * imageSize
                nonisolated(unsafe) let emb = embeddings.map { $0 + first * embeddingDim }
                nonisolated(unsafe) let log = logits.map { $0 + first * classCount }
                let engine = lane.engine
                lane.thread.submit {
                    do { try engine.run(input: inp, count: share, embeddings: emb, logits: log) }
                    catch { failed[i] = error }
                }
                first += share
            }
            for lane in lanes { lane.thread.wait() }
            if let error = failed.lazy.compactMap({ $0 }).first { throw error }
        }
    }

    @inline(__always)
    private func execute(_ step: Step) throws {
        try step.args.withUnsafeBufferPointer { args in
            try dnnl(dnnl_primitive_execute(step.primitive.handle, context.stream, Int32(args.count), args.baseAddress),
                     "execute \(step.layer)")
        }
    }

    /// Runs one batch of zeros at `maxBatch` (the first execution is slower; call before timing or READY).
    public func warmUp() throws {
        let c = model.inputShape.reduce(1, *)
        let zeros = [Float](repeating: 0, count: maxBatch * c)
        var e = [Float](repeating: 0, count: maxBatch * model.embeddingDim)
        var l = [Float](repeating: 0, count: maxBatch * max(model.classCount, 1))
        try zeros.withUnsafeBufferPointer { input in
            try run(input: input.baseAddress!, count: maxBatch, embeddings: &e, logits: &l)
        }
    }

    /// Layer-by-layer description of the compiled network for `count` (implementations, reorders).
    public func describe(batch count: Int) throws -> [String] {
        try compiledLayers(batch: count).map { "\($0.layer): \($0.implementation)" }
    }

    /// Every primitive of the network for `count`, in execution order, with the oneDNN
    /// implementation that runs it (`dnnl_query_impl_info_str`). Without `includeOutputs`, the
    /// copies into the caller's buffers are left out (they run only when outputs are requested).
    public func compiledLayers(batch count: Int, includeOutputs: Bool = false) throws -> [CompiledLayer] {
        Engine.layers(of: try network(count), includeOutputs: includeOutputs)
    }

    /// The layers of the network for `maxBatch` (compiled by `init`; outputs included) that oneDNN
    /// runs with a reference (`ref:`) implementation: correct but one to three orders of magnitude
    /// slower. Empty in every supported configuration; callers say so when it is not.
    public var referenceLayers: [CompiledLayer] {
        Engine.layers(of: networks[maxBatch]!, includeOutputs: true).filter(\.isReference)
    }

    /// int8 without VNNI: the layers whose weights run halved to 7 bits because a pair of their
    /// u8 x s8 products could saturate int16 (Network+Int8.swift). Empty with VNNI, for 7-bit
    /// (`reduce_range`) models and for other precisions.
    public var halvedWeightLayers: [String] { networks[maxBatch]!.halvedLayers }

    private static func layers(of net: Network, includeOutputs: Bool) -> [CompiledLayer] {
        let outputs = includeOutputs ? [net.embeddingStep!] + (net.logitsStep.map { [$0] } ?? []) : []
        return (net.steps + outputs).map { CompiledLayer(step: $0) }
    }

    /// Reorders between layers in the network for `count` (0 when activation formats are consistent).
    public func interLayerReorders(batch count: Int) throws -> Int { try network(count).interLayerReorders }
}

/// One compiled oneDNN primitive of a network: which layer it runs, what kind of primitive it is
/// and which implementation oneDNN chose for it.
public struct CompiledLayer: Sendable, Equatable {
    /// What the primitive computes (oneDNN's primitive kind).
    public enum Kind: String, Sendable {
        case convolution, pooling, innerProduct = "inner_product", eltwise, binary, reorder, other
    }

    /// The layer (node) name; `a + b` for a 1x1 convolution with its depthwise convolution fused,
    /// `X (reorder)` for a layout change before X, `output NAME` for the copy into the caller's buffer.
    public let layer: String
    public let kind: Kind
    /// oneDNN's implementation name, e.g. `jit_1x1:avx2`, `jit_dw:avx2`, `ref:any`.
    public let implementation: String

    /// True for a reference implementation (`ref:...`, `ref_fused_convolution`...).
    public var isReference: Bool { implementation.hasPrefix("ref") }

    public init(layer: String, kind: Kind, implementation: String) {
        self.layer = layer
        self.kind = kind
        self.implementation = implementation
    }

    init(step: Step) {
        let kind: Kind
        switch step.primitive.kind {
        case dnnl_convolution: kind = .convolution
        case dnnl_pooling, dnnl_pooling_v2: kind = .pooling
        case dnnl_inner_product: kind = .innerProduct
        case dnnl_eltwise: kind = .eltwise
        case dnnl_binary: kind = .binary
        case dnnl_reorder: kind = .reorder
        default: kind = .other
        }
        self.init(layer: step.layer, kind: kind, implementation: step.primitive.implementation)
    }

    /// Implementation names with their counts, most used first, e.g. `[("jit_1x1:avx2", 34), ...]`.
    public static func families(_ layers: [CompiledLayer]) -> [(implementation: String, count: Int)] {
        var counts: [String: Int] = [:]
        for l in layers { counts[l.implementation, default: 0] += 1 }
        return counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}

/// A dedicated thread that runs submitted closures one at a time. GNU OpenMP keeps the thread
/// count and its worker pool per calling thread, so a stream's primitives are built and run here.
final class LaneThread: @unchecked Sendable {
    private let ready = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    private var work: (() -> Void)?
    private var stopping = false

    init() {
        let thread = Thread { [self] in
            while true {
                ready.wait()
                if stopping { return }
                work?()
                work = nil
                done.signal()
            }
        }
        thread.name = "framepipe-infer"
        thread.start()
    }

    /// Starts `body` on the thread; `wait()` returns when it has finished.
    func submit(_ body: @escaping () -> Void) {
        work = body
        ready.signal()
    }

    func wait() { done.wait() }

    /// Runs `body` on the thread and waits for it.
    func run(_ body: @escaping () -> Void) {
        submit(body)
        wait()
    }

    /// Ends the thread after its current work.
    func stop() {
        stopping = true
        ready.signal()
    }
}
