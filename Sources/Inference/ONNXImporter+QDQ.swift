// QDQ import: QuantizeLinear / DequantizeLinear (onnx/docs/Operators.md, opset 10-21), the form
// onnxruntime's `quantize_static` and OpenVINO NNCF write. A Q → DQ pair on an activation becomes
// an annotation of the float value (its scale and zero point); a DQ of an integer initializer
// becomes the float weight it describes plus its integer form. The float graph in between is
// what fp32 runs; the int8 runtime reads the annotations (Network+Int8.swift).
import ONNXProto

/// Importer state for QDQ models.
struct QDQState {
    /// Data type (TensorProto.DataType) and dims of every constant, to tell uint8 from int8.
    var constantTypes: [String: (type: Int32, dims: [Int])] = [:]
    /// QuantizeLinear output → its float input and parameters (integer values never reach the IR).
    var quantized: [String: (source: String, params: QuantParams)] = [:]
    /// QuantizeLinear of a float initializer → the integer tensor it computes.
    var quantizedConstants: [String: QuantizedWeight] = [:]
    /// DequantizeLinear output → the float value it stands for.
    var aliases: [String: String] = [:]
    /// Names of the graph's outputs (a DequantizeLinear writing one keeps its name).
    var graphOutputs: Set<String> = []
}

extension ONNXImporter {
    /// The node with inputs that name DequantizeLinear outputs replaced by the float value they
    /// stand for; refuses a node other than DequantizeLinear reading integer values.
    func resolvingQDQ(_ node: Onnx_NodeProto) throws -> Onnx_NodeProto {
        guard !qdq.aliases.isEmpty || !qdq.quantized.isEmpty else { return node }
        var node = node
        node.input = node.input.map { qdq.aliases[$0] ?? $0 }
        if node.opType != "DequantizeLinear",
           let raw = node.input.first(where: { qdq.quantized[$0] != nil || qdq.quantizedConstants[$0] != nil }) {
            throw NodeError("reads the integer output '\(raw)' of a QuantizeLinear; only DequantizeLinear may (QOperator models such as QLinearConv are not supported: export QDQ)")
        }
        return node
    }

    /// Scale, zero point and axis inputs of a QuantizeLinear / DequantizeLinear node, checked.
    private func parameters(_ node: Onnx_NodeProto, _ a: NodeAttributes, rank: Int?) throws -> QuantParams {
        guard node.input.count >= 2, !node.input[1].isEmpty else { throw NodeError("missing scale input") }
        guard let scale = graph.initializers[node.input[1]] else {
            throw NodeError("scale '\(node.input[1])' must be a constant float initializer")
        }
        guard scale.count >= 1, scale.shape.count <= 1 else { throw NodeError("scale must be a scalar or a 1-D tensor, got shape \(scale.shape)") }
        if let bad = scale.data.first(where: { !($0 > 0) || !$0.isFinite }) {
            throw NodeError("scale \(bad) must be positive and finite")
        }
        var zeroPoints = [Int](repeating: 0, count: scale.count)
        var type: Int32 = 2   // uint8 when the zero point is omitted (Operators.md)
        if node.input.count >= 3, !node.input[2].isEmpty {
            guard let zp = ints[node.input[2]], let info = qdq.constantTypes[node.input[2]] else {
                throw NodeError("zero point '\(node.input[2])' must be a constant integer initializer")
            }
            type = info.type
            guard zp.count == scale.count else {
                throw NodeError("mixed per-axis parameters: \(scale.count) scale(s) but \(zp.count) zero point(s)")
            }
            zeroPoints = zp
        }
        let params: QuantParams
        switch type {
        case 2: params = QuantParams(scales: scale.data, zeroPoints: zeroPoints, signed: false)
        case 3: params = QuantParams(scales: scale.data, zeroPoints: zeroPoints, signed: true)
        case 6: params = QuantParams(scales: scale.data, zeroPoints: zeroPoints, signed: true, bits: 32)
        default: throw NodeError("zero point type \(type) is not supported (uint8, int8, int32 only)")
        }
        if let bad = zeroPoints.first(where: { !params.range.contains($0) }) {
            throw NodeError("zero point \(bad) is out of range for \(type == 2 ? "uint8" : type == 3 ? "int8" : "int32")")
        }
        guard scale.count > 1 else { return params }
        // Per-axis: the axis attribute (default 1) indexes the quantized tensor's dimensions.
        guard let rank else { throw NodeError("per-axis parameters on an activation are not supported (one scale per tensor)") }
        var axis = a.int("axis") ?? 1
        if axis < 0 { axis += rank }
        guard (0..<rank).contains(axis) else { throw NodeError("axis \(a.int("axis") ?? 1) out of range for rank \(rank)") }
        var p = params
        p.axis = axis
        return p
    }

    /// QuantizeLinear of an activation (recorded, not emitted) or of a float initializer (computed).
    mutating func quantizeLinear(_ node: Onnx_NodeProto, _ a: NodeAttributes) throws {
        let x = node.input[0]
        if let w = graph.initializers[x] {
            let p = try parameters(node, a, rank: w.shape.count)
            guard p.bits == 8 else { throw NodeError("only 8-bit QuantizeLinear is supported") }
            let inner = p.axis.map { w.shape[($0 + 1)...].reduce(1, *) } ?? 1
            let channels = p.axis.map { w.shape[$0] } ?? 1
            guard channels == p.scales.count else { throw NodeError("\(p.scales.count) scales for axis size \(channels)") }
            let values = w.data.enumerated().map { i, v in Int32(p.quantize(v, channel: (i / inner) % channels)) }
            qdq.quantizedConstants[node.output[0]] = QuantizedWeight(shape: w.shape, values: values, params: p)
            return
        }
        guard shapes[x] != nil else { throw NodeError("input '\(x)' is neither an activation nor a constant") }
        let p = try parameters(node, a, rank: nil)
        guard p.bits == 8 else { throw NodeError("activations must be quantized to 8 bits (uint8 or int8)") }
        qdq.quantized[node.output[0]] = (x, p)
    }

    /// DequantizeLinear of a QuantizeLinear output (an alias of its float input, annotated) or of
    /// an integer initializer (becomes the float initializer, with its integer form kept).
    mutating func dequantizeLinear(_ node: Onnx_NodeProto, _ a: NodeAttributes) throws {
        let x = node.input[0], out = node.output[0]
        if let (source, qp) = qdq.quantized[x] {
            let p = try parameters(node, a, rank: nil)
            guard p == qp else {
                throw NodeError("scale/zero point differ from the QuantizeLinear that produced '\(x)' (requantization is not supported)")
            }
            if let old = graph.quantization.activations[source], old != p {
                throw NodeError("'\(source)' is quantized twice with different parameters")
            }
            graph.quantization.activations[source] = p
            graph.quantization.activations[out] = p
            if qdq.graphOutputs.contains(out) {
                // A graph output keeps its name (and its producer, which tells logits apart): an
                // identity the optimiser folds away.
                try add(node, .identity, inputs: [source], outputs: [out])
            } else {
                // The pair saturates to the integer range: quantizers drop a Relu / Clip that this
                // saturation implies, so the float graph keeps it as a Clip (a post-op, or a no-op
                // for the int8 runtime, where the integer type saturates anyway).
                let low = p.scale * Float(p.range.lowerBound - p.zeroPoints[0])
                let high = p.scale * Float(p.range.upperBound - p.zeroPoints[0])
                try add(node, .clip(min: low, max: high), inputs: [source], outputs: [out])
            }
            return
        }
        let weight: QuantizedWeight
        if let q = qdq.quantizedConstants[x] {
            weight = q
            guard try parameters(node, a, rank: q.shape.count) == q.params else {
                throw NodeError("scale/zero point differ from the QuantizeLinear of '\(x)'")
            }
        } else if let values = ints[x], let info = qdq.constantTypes[x] {
            var p = try parameters(node, a, rank: info.dims.count)
            let expected: Int32 = p.bits == 32 ? 6 : (p.signed ? 3 : 2)
            guard info.type == expected else {
                throw NodeError("input '\(x)' has data type \(info.type) but its zero point has type \(expected)")
            }
            p.axis = p.axis ?? (p.perTensor ? nil : 1)
            weight = QuantizedWeight(shape: info.dims, values: values.map { Int32(truncatingIfNeeded: $0) }, params: p)
        } else {
            throw NodeError("input '\(x)' must be a QuantizeLinear output or an integer initializer")
        }
        let p = weight.params
        let inner = p.axis.map { weight.shape[($0 + 1)...].reduce(1, *) } ?? 1
        let channels = p.axis.map { weight.shape[$0] } ?? 1
        guard channels == p.scales.count else {
            throw NodeError("\(p.scales.count) scales along axis \(p.axis ?? 0) of a tensor of shape \(weight.shape)")
        }
        let floats = weight.values.enumerated().map { i, q in
            let c = (i / inner) % channels
            return p.scales[c] * Float(Int(q) - p.zeroPoints[c])
        }
        graph.initializers[out] = Tensor(shape: weight.shape, data: floats)
        graph.quantization.weights[out] = weight
    }
}
