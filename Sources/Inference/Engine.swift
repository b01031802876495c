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
/// Layouts: fp32 (and bf16 without AMX) force nChw16c activations; bf16 with AMX leaves them to oneDNN.
public final class Engine {
    /// The model this engine runs.
    public let model: Model
    /// The compute precision.
    public let precision: Precision
    /// The largest `count` accepted by `run`.
    public let maxBatch: Int
    /// oneDNN (OpenMP) threads used by this engine's calls, or nil for the process default.
    public let threads: Int?

    private let context: DNNLContext
    private let lowered: LoweredGraph
    private let weights = WeightCache()
    private let arena = Arena()
    private var networks: [Int: Network] = [:]

    /// Creates an engine and compiles the network for `maxBatch` (weights are reordered now).
    ///
    /// - Throws: `InferenceError` when bf16 is asked for on a CPU without bf16 support, or when
    ///   oneDNN cannot build a primitive for a node (the error names the node).
    public init(model: Model, precision: Precision = .fp32, maxBatch: Int, threads: Int? = nil) throws {
        precondition(maxBatch > 0, "maxBatch must be positive")
        self.model = model
        self.precision = precision
        self.maxBatch = maxBatch
        self.threads = threads
        if precision == .bf16 && !Engine.supportsBF16 {
            throw InferenceError(source: model.source, reason: "bf16 needs a CPU with AVX512-BF16 or AMX (oneDNN reports \(Engine.cpuISA)); use --precision fp32")
        }
        if precision == .int8 && model.graph.quantization.isEmpty {
            throw InferenceError(source: model.source, reason: "int8 needs a quantized model (QDQ ONNX: QuantizeLinear/DequantizeLinear pairs); make one with `framepipe quantize`, or use --precision fp32")
        }
        do { context = try DNNLContext() } catch {
            throw InferenceError(source: model.source, reason: "\(error)")
        }
        lowered = try LoweredGraph(model: model)
        _ = try network(maxBatch)
    }

    /// True when oneDNN can run bf16 natively on this CPU (AVX512-BF16 or AMX).
    public static var supportsBF16: Bool {
        let isa = dnnl_get_effective_cpu_isa().rawValue
        let bf16 = dnnl_cpu_isa_avx512_core_bf16.rawValue
        return isa & bf16 == bf16
    }

    /// The oneDNN library version, e.g. `"2.6.3"` (`dnnl_version`).
    public static var oneDNNVersion: String {
        let v = dnnl_version()!.pointee
        return "\(v.major).\(v.minor).\(v.patch)"
    }

    /// True when oneDNN may use AMX tiles (bf16 then prefers its own "any" formats).
    static var hasAMX: Bool {
        let isa = dnnl_get_effective_cpu_isa().rawValue
        return isa & dnnl_cpu_isa_avx512_core_amx.rawValue == dnnl_cpu_isa_avx512_core_amx.rawValue
    }

    /// The instruction set oneDNN dispatches to (e.g. `"avx512_core_amx"`), honouring `ONEDNN_MAX_CPU_ISA`.
    public static var cpuISA: String {
        switch dnnl_get_effective_cpu_isa() {
        case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx"
        case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16"
        case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni"
        case dnnl_cpu_isa_avx512_core: return "avx512_core"
        case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni"
        case dnnl_cpu_isa_avx2: return "avx2"
        case dnnl_cpu_isa_avx: return "avx"
        case dnnl_cpu_isa_sse41: return "sse41"
        case let other: return String(other.rawValue, radix: 16)
        }
    }

    /// The compiled network for `count` images, built on first use and cached.
    private func network(_ count: Int) throws -> Network {
        if let n = networks[count] { return n }
        InferenceThreads.apply(threads)
        let n = try Network(model: model, lowered: lowered, batch: count, precision: precision, context: context,
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
        let net = try network(count)
        return net.steps.map { "\($0.layer): \($0.primitive.implementation)" }
    }

    /// Reorders between layers in the network for `count` (0 when activation formats are consistent).
    public func interLayerReorders(batch count: Int) throws -> Int { try network(count).interLayerReorders }
}
