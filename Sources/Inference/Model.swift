import Foundation

/// A verified, optimised inference graph and what the runtime needs to know about it.
///
/// Immutable after load, so one `Model` can back several `Engine`s (one per queue).
public final class Model: @unchecked Sendable {
    /// The optimised graph (batch norms folded, identities and a trailing softmax removed).
    public let graph: Graph
    /// Where the model came from (a path), used in errors.
    public let source: String
    /// Per-sample shape of every activation value.
    public let shapes: [String: [Int]]

    /// Loads an ONNX model, detected by content (an H5 file gets a hint to use the Keras importer).
    public static func load(path: String) throws -> Model {
        if let handle = FileHandle(forReadingAtPath: path) {
            let magic = handle.readData(ofLength: 8)
            try? handle.close()
            if magic == Data([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]) {
                throw InferenceError(source: path, reason: "this is an HDF5 (Keras) file; load it with the Keras importer")
            }
        }
        return try Model(graph: ONNXImporter.load(path: path), source: path)
    }

    /// Verifies `graph` and runs the optimisation passes.
    ///
    /// - Parameters:
    ///   - graph: an importer's graph (ONNX, Keras H5, or built by hand).
    ///   - source: the model path (or label) used in errors.
    public init(graph: Graph, source: String) throws {
        _ = try graph.verify(source: source)
        var g = graph
        g.removeIdentities()
        g.foldBatchNorms()
        g.removeTrailingSoftmax()
        self.shapes = try g.verify(source: source)
        self.graph = g
        self.source = source

        guard g.inputs.count == 1, let input = g.inputs.first, (1...4).contains(input.shape.count) else {
            throw InferenceError(source: source, reason: "the model must have one input of rank 1 to 4 (NCHW for images)")
        }
        for node in g.nodes {
            if case .softmax = node.op {
                throw InferenceError(source: source, node: node.name, op: "Softmax", reason: "Softmax is supported only as the last node")
            }
            if case .flatten(let axis) = node.op, axis != 1 {
                throw InferenceError(source: source, node: node.name, op: "Flatten", reason: "only axis 1 is supported")
            }
        }
        let (embedding, logits) = try Model.pickOutputs(g, shapes: shapes, source: source)
        self.embeddingOutput = embedding
        self.logitsOutput = logits
    }

    /// The image input's name.
    public var inputName: String { graph.inputs[0].name }
    /// The image input's per-sample shape `[C, H, W]`.
    public var inputShape: [Int] { shapes[inputName]! }
    /// The value carrying the embedding: the `features` output if present, else the input of the
    /// final Flatten / Reshape / Gemm.
    public let embeddingOutput: String
    /// The value carrying raw logits (the last Gemm/MatMul output), or nil for a feature-only model.
    public let logitsOutput: String?
    /// Number of floats per sample in the embedding.
    public var embeddingDim: Int { shapes[embeddingOutput]!.reduce(1, *) }
    /// Number of classes (logits per sample), 0 when the model has no logits.
    public var classCount: Int { logitsOutput.map { shapes[$0]!.reduce(1, *) } ?? 0 }

    private static func pickOutputs(_ g: Graph, shapes: [String: [Int]], source: String) throws -> (String, String?) {
        func producer(_ value: String) -> Node? { g.nodes.first { $0.outputs.contains(value) } }
        let fc = g.outputs.first { out in
            guard let op = producer(out.name)?.op else { return false }
            if case .gemm = op { return true }
            return op == .matMul
        }
        var embedding = g.outputs.first { $0.name == "features" }?.name
        if embedding == nil, let fc {
            // Walk back from the classifier through Flatten / Reshape to the pooled features.
            var value = producer(fc.name)!.inputs[0]
            while let p = producer(value), p.op == .flatten(axis: 1) || { if case .reshape = p.op { return true }; return false }() {
                value = p.inputs[0]
            }
            embedding = value
        }
        if embedding == nil, g.outputs.count == 1 { embedding = g.outputs[0].name }
        guard let embedding else {
            throw InferenceError(source: source, reason: "cannot tell the embedding output: no `features` output and no final Gemm/MatMul (outputs: \(g.outputs.map(\.name)))")
        }
        let logits = fc?.name == embedding ? nil : fc?.name
        return (embedding, logits)
    }
}
