// ONNX → graph IR. Follows onnx/onnx.proto (ModelProto, GraphProto, NodeProto, TensorProto) and
// onnx/docs/Operators.md for the attribute defaults of each operator (opset 6 to 21).
import Foundation
import ONNXProto
import SwiftProtobuf

/// Reads an ONNX model file into a `Graph`.
///
/// Supports the operators MobileNetV2 exports use (torchvision, the ONNX model zoo's
/// mobilenetv2-7/-12, TF-converted models): Conv, BatchNormalization, Relu, Clip (attributes or
/// inputs), Add, GlobalAveragePool, AveragePool, Flatten, Reshape to [N, -1], Gemm, MatMul(+Add),
/// Dropout, Identity, Softmax and Constant, plus the Shape → Gather → Unsqueeze → Concat chains
/// older exporters emit to compute a Reshape target. Anything else fails here, naming the node.
public struct ONNXImporter {
    /// The model path, used in every error.
    public let source: String

    var graph = Graph(inputs: [], outputs: [], nodes: [], initializers: [:])
    var ints: [String: [Int]] = [:]          // int64 constants (Reshape targets, shape arithmetic)
    var shapes: [String: [Int]] = [:]        // per-sample activation shapes, as nodes are added
    private var opset = 13
    private var uses: [String: Int] = [:]            // readers of each value in the ONNX graph (outputs count)
    var qdq = QDQState()                             // QuantizeLinear outputs, DequantizeLinear aliases (+QDQ.swift)

    /// Creates an importer for errors that name `source`.
    public init(source: String) { self.source = source }

    /// Parses `path` and converts it.
    public static func load(path: String) throws -> Graph {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw InferenceError(source: path, reason: "cannot read the model file (\(error.localizedDescription))")
        }
        return try ONNXImporter(source: path).convert(data)
    }

    /// Converts serialized ModelProto bytes.
    public func convert(_ data: Data) throws -> Graph {
        let model: Onnx_ModelProto
        do { model = try Onnx_ModelProto(serializedBytes: data) } catch {
            throw InferenceError(source: source, reason: "not an ONNX model (protobuf decoding failed: \(error))")
        }
        guard model.irVersion > 0, model.hasGraph, !model.graph.node.isEmpty else {
            throw InferenceError(source: source, reason: "not an ONNX model (no ir_version or empty graph)")
        }
        var importer = self
        importer.opset = Int(model.opsetImport.first { $0.domain.isEmpty || $0.domain == "ai.onnx" }?.version ?? 13)
        try importer.read(model.graph)
        return importer.graph
    }

    // MARK: - Graph

    private mutating func read(_ g: Onnx_GraphProto) throws {
        for tensor in g.initializer { try addConstant(tensor, name: tensor.name) }
        for input in g.input where graph.initializers[input.name] == nil && ints[input.name] == nil {
            let shape = try valueShape(input)
            graph.inputs.append(ValueInfo(name: input.name, shape: shape))
        }
        guard graph.inputs.count == 1 else {
            throw InferenceError(source: source, node: graph.inputs.map(\.name).joined(separator: ", "), op: "input",
                                 reason: "expected exactly one input (the image) besides the weights, found \(graph.inputs.count)")
        }
        // Images are [N, C, H, W]; [N], [N, K] and [N, A, B] run too (elementwise ops, Gemm), and
        // the pipeline checks for an RGB image input where it needs one.
        guard (1...4).contains(graph.inputs[0].shape.count) else {
            throw InferenceError(source: source, node: graph.inputs[0].name, op: "input",
                                 reason: "input must have rank 1 to 4 ([N, C, H, W] for images), got shape \(graph.inputs[0].shape)")
        }
        shapes = try graph.inferShapes(source: source)
        for node in g.node { for input in node.input { uses[input, default: 0] += 1 } }
        for output in g.output { uses[output.name, default: 0] += 1 }
        qdq.graphOutputs = Set(g.output.map(\.name))
        for node in g.node {
            do { try convert(node) } catch let error as NodeError {
                throw InferenceError(source: source, node: node.name.isEmpty ? node.output.first ?? "" : node.name,
                                     op: node.opType, reason: error.reason)
            }
        }
        for output in g.output {
            if ints[output.name] != nil {
                throw InferenceError(source: source, node: output.name, op: "output",
                                     reason: "the output is an integer shape value computed at load; only float32 tensor outputs are supported")
            }
            guard let shape = shapes[output.name] else {
                throw InferenceError(source: source, node: output.name, op: "output", reason: "output is not computed by any node")
            }
            graph.outputs.append(ValueInfo(name: output.name, shape: [-1] + shape))
        }
        // ONNX allows unused initializers (e.g. Clip bounds consumed here); the IR verifier does not.
        let used = Set(graph.nodes.flatMap(\.inputs))
        graph.initializers = graph.initializers.filter { used.contains($0.key) }
    }

    private func valueShape(_ info: Onnx_ValueInfoProto) throws -> [Int] {
        guard info.type.tensorType.elemType == 1 else {
            throw InferenceError(source: source, node: info.name, op: "input",
                                 reason: "input element type \(info.type.tensorType.elemType) is not float32")
        }
        var shape = info.type.tensorType.shape.dim.enumerated().map { i, d in
            i == 0 ? -1 : (d.dimValue > 0 ? Int(d.dimValue) : -1)
        }
        // A symbolic height or width (fully convolutional exports) takes the other spatial size
        // (square images), or 224 (the MobileNetV2 ImageNet size) when both are symbolic.
        if shape.count == 4 {
            switch (shape[2], shape[3]) {
            case (-1, -1): (shape[2], shape[3]) = (224, 224)
            case (-1, let w): shape[2] = w
            case (let h, -1): shape[3] = h
            default: break
            }
        }
        return shape
    }

    // MARK: - Tensors

    private mutating func addConstant(_ t: Onnx_TensorProto, name: String) throws {
        let dims = t.dims.map { Int($0) }
        let count = dims.reduce(1, *)
        if t.dataLocation == .external {
            throw InferenceError(source: source, node: name, op: "initializer", reason: "external tensor data is not supported")
        }
        qdq.constantTypes[name] = (t.dataType, dims)
        func raw<T>(_ type: T.Type) -> [T]? {
            guard t.rawData.count == count * MemoryLayout<T>.size else { return nil }
            return t.rawData.withUnsafeBytes { bytes in (0..<count).map { bytes.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) } }
        }
        var floats: [Float]?
        switch t.dataType {
        case 1: floats = t.rawData.isEmpty ? t.floatData : raw(Float.self)
        case 11: floats = (t.rawData.isEmpty ? t.doubleData : raw(Double.self)).map { $0.map(Float.init) }
        case 7: ints[name] = (t.rawData.isEmpty ? t.int64Data : raw(Int64.self))?.map { Int($0) }
                if ints[name]?.count != count { ints[name] = nil } else { return }
        case 6: ints[name] = (t.rawData.isEmpty ? t.int32Data : raw(Int32.self))?.map { Int($0) }
                if ints[name]?.count != count { ints[name] = nil } else { return }
        case 9: ints[name] = (t.rawData.isEmpty ? t.int32Data.map { Int($0) } : raw(UInt8.self)?.map { Int($0) })   // bool
                if ints[name]?.count != count { ints[name] = nil } else { return }
        case 2: ints[name] = t.rawData.isEmpty ? t.int32Data.map { Int($0) } : raw(UInt8.self)?.map { Int($0) }   // uint8 (QDQ)
                if ints[name]?.count != count { ints[name] = nil } else { return }
        case 3: ints[name] = t.rawData.isEmpty ? t.int32Data.map { Int($0) } : raw(Int8.self)?.map { Int($0) }    // int8 (QDQ)
                if ints[name]?.count != count { ints[name] = nil } else { return }
        default:
            throw InferenceError(source: source, node: name, op: "initializer",
                                 reason: "tensor data type \(t.dataType) is not supported (float32, float64, int8, uint8, int32, int64, bool only)")
        }
        guard let values = floats, values.count == count else {
            throw InferenceError(source: source, node: name, op: "initializer",
                                 reason: "tensor holds \(floats?.count ?? t.rawData.count) values for shape \(dims)")
        }
        graph.initializers[name] = Tensor(shape: dims, data: values)
    }

    // MARK: - Nodes

    /// The supported ONNX operator types (the dispatch in `convert` handles exactly these).
    public static let supportedOps: Set<String> = [
        "Conv", "BatchNormalization", "Relu", "Clip", "Add", "GlobalAveragePool", "AveragePool", "Flatten",
        "Reshape", "Gemm", "MatMul", "Softmax", "Dropout", "Identity", "Constant",
        "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "QuantizeLinear", "DequantizeLinear",
    ]

    /// Dispatches on the op type (Operators.md gives each attribute default used below).
    private mutating func dispatch(_ node: Onnx_NodeProto, _ a: NodeAttributes) throws {
        switch node.opType {
        case "Conv": try conv(node, a)
        case "BatchNormalization":
            guard (a.int("training_mode") ?? 0) == 0 else { throw NodeError("training_mode = 1 is not supported (inference only)") }
            guard (a.int("spatial") ?? 1) == 1 else { throw NodeError("spatial = 0 is not supported") }
            try add(node, .batchNorm(epsilon: a.float("epsilon") ?? 1e-5), inputs: Array(node.input.prefix(5)))
        case "Relu": try add(node, .relu)
        case "Clip": try clip(node, a)
        case "Add": try add(node)
        case "GlobalAveragePool": try add(node, .globalAvgPool)
        case "AveragePool": try averagePool(node, a)
        case "Flatten":
            let axis = try self.axis(a.int("axis") ?? 1, of: node.input[0], endAllowed: true)
            guard axis == 1 else { throw NodeError("axis \(a.int("axis") ?? 1) is not supported: only axis 1 (keep the batch dimension)") }
            try add(node, .flatten(axis: 1))
        case "Reshape": try reshape(node, a)
        case "Gemm":
            try requireMatrix(node, "A")
            if node.input.count > 2, !node.input[2].isEmpty, let c = graph.initializers[node.input[2]] { try requireRowBias(c) }
            let attrs = GemmAttributes(alpha: a.float("alpha") ?? 1, beta: a.float("beta") ?? 1,
                                       transA: (a.int("transA") ?? 0) != 0, transB: (a.int("transB") ?? 0) != 0)
            try add(node, .gemm(attrs))
        case "MatMul":
            try requireMatrix(node, "A")
            try add(node, .matMul)
        case "Softmax":
            // Before opset 13 the input is read as 2-D at `axis`; for an [N, K] input both readings agree,
            // and the shape check accepts only that case.
            try add(node, .softmax(axis: self.axis(a.int("axis") ?? (opset >= 13 ? -1 : 1), of: node.input[0])))
        case "Dropout": try dropout(node)
        case "Identity": try add(node, .identity)
        case "Constant": try constant(node, a)
        case "Shape": try shapeOf(node, a)
        case "Gather": try gather(node, a)
        case "Unsqueeze", "Squeeze": try ints[node.input[0]] != nil ? intPassThrough(node) : squeeze(node, a)
        case "Concat": try concat(node)
        case "QuantizeLinear": try quantizeLinear(node, a)
        case "DequantizeLinear": try dequantizeLinear(node, a)
        default: throw NodeError("unsupported operator")
        }
    }

    private mutating func convert(_ node: Onnx_NodeProto) throws {
        guard node.domain.isEmpty || node.domain == "ai.onnx" else { throw NodeError("operator domain '\(node.domain)' is not supported") }
        guard ONNXImporter.supportedOps.contains(node.opType) else { throw NodeError("unsupported operator") }
        guard !node.input.isEmpty || node.opType == "Constant", !node.output.isEmpty else { throw NodeError("node has no inputs or outputs") }
        try dispatch(resolvingQDQ(node), NodeAttributes(node.attribute))
    }

    /// Appends an IR node, inferring its output shape now so errors name this node.
    mutating func add(_ node: Onnx_NodeProto, _ op: Op, inputs: [String]? = nil, outputs: [String]? = nil) throws {
        let inputs = inputs ?? node.input
        let outputs = outputs ?? node.output
        guard outputs.dropFirst().allSatisfy({ $0.isEmpty }) else {
            throw NodeError("only the first output is supported (training-mode outputs are not)")
        }
        let irNode = Node(name: node.name.isEmpty ? outputs[0] : node.name, op: op, inputs: inputs, outputs: [outputs[0]])
        shapes[outputs[0]] = try Graph.outputShape(of: irNode, inputShapes: inputs.map { shapes[$0] },
                                                   initializers: graph.initializers)
        graph.nodes.append(irNode)
    }

    private mutating func conv(_ node: Onnx_NodeProto, _ a: NodeAttributes) throws {
        guard node.input.count >= 2, let weight = graph.initializers[node.input[1]], weight.shape.count == 4 else {
            throw NodeError("weight must be a 4-D constant initializer (only 2-D convolutions are supported)")
        }
        guard let input = shapes[node.input[0]], input.count == 3 else { throw NodeError("input must be NCHW") }
        let kernel = a.ints("kernel_shape") ?? Array(weight.shape[2...])
        let strides = a.ints("strides") ?? [1, 1]
        let dilations = a.ints("dilations") ?? [1, 1]
        let (begin, end) = try pads(a, input: Array(input[1...]), kernel: kernel, strides: strides, dilations: dilations)
        let attrs = ConvAttributes(groups: a.int("group") ?? 1, kernel: kernel, strides: strides, dilations: dilations,
                                   padsBegin: begin, padsEnd: end)
        try add(node, .conv(attrs), inputs: node.input.count > 2 && !node.input[2].isEmpty ? Array(node.input.prefix(3)) : Array(node.input.prefix(2)))
    }

    /// `axis` of `value` (batch dimension included) made non-negative; `endAllowed`: the rank
    /// itself is valid too (Flatten's [-r, r]).
    private func axis(_ axis: Int, of value: String, endAllowed: Bool = false) throws -> Int {
        guard let shape = shapes[value] else { throw NodeError("input '\(value)' has no known shape") }
        let rank = shape.count + 1
        guard (-rank..<(endAllowed ? rank + 1 : rank)).contains(axis) else { throw NodeError("axis \(axis) is out of range for rank \(rank)") }
        return axis < 0 ? axis + rank : axis
    }

    /// Gemm and MatMul read A as a matrix [M, K] (M the batch); higher ranks would be batched products.
    private func requireMatrix(_ node: Onnx_NodeProto, _ name: String) throws {
        guard let shape = shapes[node.input[0]] else { throw NodeError("input '\(node.input[0])' has no known shape") }
        guard shape.count == 1 else {
            throw NodeError("\(name) must be a 2-D matrix [M, K], got shape [N, \(shape.map(String.init).joined(separator: ", "))] (batched products are not supported)")
        }
    }

    /// A bias added to a [M, N] product must broadcast along M: a scalar, [N] or [1, N].
    private func requireRowBias(_ c: Tensor) throws {
        guard c.shape.count <= 1 || c.shape.dropLast().allSatisfy({ $0 == 1 }) else {
            throw NodeError("bias C of shape \(c.shape) is not supported: only a scalar, [N] or [1, N] (one row for every sample)")
        }
    }

    /// Dropout at inference is the identity; training mode and the mask output are refused.
    private mutating func dropout(_ node: Onnx_NodeProto) throws {
        guard node.output.count < 2 || node.output[1].isEmpty else { throw NodeError("the mask output is not supported (inference only)") }
        if node.input.count > 2, !node.input[2].isEmpty {
            guard let mode = ints[node.input[2]], mode.count == 1 else { throw NodeError("training_mode must be a constant") }
            guard mode[0] == 0 else { throw NodeError("training_mode = true is not supported (inference only)") }
        }
        try add(node, .identity, inputs: [node.input[0]], outputs: [node.output[0]])
    }

    private mutating func averagePool(_ node: Onnx_NodeProto, _ a: NodeAttributes) throws {
        guard let kernel = a.ints("kernel_shape"), kernel.count == 2 else {
            throw NodeError("kernel_shape must have two entries (only 2-D pooling is supported), got \(a.ints("kernel_shape") ?? [])")
        }
        guard (a.ints("dilations") ?? [1, 1]).allSatisfy({ $0 == 1 }) else { throw NodeError("dilations other than 1 are not supported") }
        guard (a.int("ceil_mode") ?? 0) == 0 else { throw NodeError("ceil_mode = 1 is not supported") }
        guard let input = shapes[node.input[0]], input.count == 3 else { throw NodeError("input must be NCHW") }
        let strides = a.ints("strides") ?? [1, 1]
        let (begin, end) = try pads(a, input: Array(input[1...]), kernel: kernel, strides: strides, dilations: [1, 1])
        try add(node, .avgPool(PoolAttributes(kernel: kernel, strides: strides, padsBegin: begin, padsEnd: end,
                                              countIncludePad: (a.int("count_include_pad") ?? 0) != 0)))
    }

    /// Explicit pads from `pads` ([t, l, b, r]) or `auto_pad` (SAME_UPPER puts the odd pad at the end).
    private func pads(_ a: NodeAttributes, input: [Int], kernel: [Int], strides: [Int], dilations: [Int]) throws -> ([Int], [Int]) {
        let auto = a.string("auto_pad") ?? "NOTSET"
        switch auto {
        case "NOTSET":
            let p = a.ints("pads") ?? [0, 0, 0, 0]
            guard p.count == 4 else { throw NodeError("pads must have four entries, got \(p)") }
            return ([p[0], p[1]], [p[2], p[3]])
        case "VALID":
            return ([0, 0], [0, 0])
        case "SAME_UPPER", "SAME_LOWER":
            guard kernel.count == 2, strides.count == 2, dilations.count == 2 else { throw NodeError("2-D attributes expected") }
            var begin = [0, 0], end = [0, 0]
            for i in 0..<2 {
                let out = (input[i] + strides[i] - 1) / strides[i]
                let total = max(0, (out - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1 - input[i])
                let small = total / 2
                (begin[i], end[i]) = auto == "SAME_UPPER" ? (small, total - small) : (total - small, small)
            }
            return (begin, end)
        default:
            throw NodeError("auto_pad '\(auto)' is not supported")
        }
    }

    private mutating func clip(_ node: Onnx_NodeProto, _ a: NodeAttributes) throws {
        var low = -Float.greatestFiniteMagnitude, high = Float.greatestFiniteMagnitude
        if opset < 11 {
            low = a.float("min") ?? low
            high = a.float("max") ?? high
        } else {
            func bound(_ i: Int) throws -> Float? {
                guard node.input.count > i, !node.input[i].isEmpty else { return nil }
                guard let t = graph.initializers[node.input[i]], t.count == 1 else {
                    throw NodeError("bound input '\(node.input[i])' must be a constant scalar")
                }
                return t.data[0]
            }
            low = try bound(1) ?? low
            high = try bound(2) ?? high
        }
        // Operators.md: with min > max every value becomes max (oneDNN's clip would give min below max).
        low = min(low, high)
        try add(node, .clip(min: low, max: high), inputs: [node.input[0]])
    }

    /// Add of two activations (residual), of a Conv result and a per-channel constant (→ conv
    /// bias), of a MatMul result and a constant row (→ Gemm), or of an activation and any
    /// constant that broadcasts against it.
    private mutating func add(_ node: Onnx_NodeProto) throws {
        guard node.input.count == 2 else { throw NodeError("expects two inputs") }
        let constantIndex = node.input.firstIndex { graph.initializers[$0] != nil }
        guard let ci = constantIndex else { return try add(node, .add) }
        let x = node.input[1 - ci]
        // A per-channel constant added to a convolution's output (tf2onnx writes the bias this way).
        if let last = graph.nodes.last, last.outputs == [x], case .conv = last.op,
           let c = graph.initializers[node.input[ci]], let channels = shapes[x]?.first, c.count == channels, c.shape.count <= 4,
           Array(repeating: 1, count: 4 - c.shape.count) + c.shape == [1, channels, 1, 1], uses[x] == 1 {
            var conv = graph.nodes.removeLast()
            var bias = conv.inputs.count > 2 ? graph.initializers[conv.inputs[2]]!.data : [Float](repeating: 0, count: channels)
            for i in bias.indices { bias[i] += c.data[i] }
            let name = (conv.name.isEmpty ? x : conv.name) + "/bias+" + node.input[ci]
            graph.initializers[name] = Tensor(shape: [channels], data: bias)
            conv.inputs = [conv.inputs[0], conv.inputs[1], name]
            conv.outputs = [node.output[0]]
            graph.nodes.append(conv)
            shapes[node.output[0]] = shapes[x]
            return
        }
        guard let last = graph.nodes.last, last.outputs == [x], last.op == .matMul, uses[x] == 1,
              (try? requireRowBias(graph.initializers[node.input[ci]]!)) != nil else {
            return try add(node, .add, inputs: [x, node.input[ci]])
        }
        graph.nodes.removeLast()
        try add(node, .gemm(GemmAttributes()), inputs: [last.inputs[0], last.inputs[1], node.input[ci]])
    }

    private mutating func reshape(_ node: Onnx_NodeProto, _ a: NodeAttributes) throws {
        guard node.input.count == 2, let target = ints[node.input[1]] else {
            throw NodeError("the target shape must be a constant (or computable from the input shape)")
        }
        guard (a.int("allowzero") ?? 0) == 0 || !target.contains(0) else {
            throw NodeError("allowzero = 1 with a 0 in the target shape \(target) is not supported")
        }
        try add(node, .reshape(shape: target), inputs: [node.input[0]])
    }

    private mutating func constant(_ node: Onnx_NodeProto, _ a: NodeAttributes) throws {
        let name = node.output[0]
        if let t = a.tensor("value") {
            do { try addConstant(t, name: name) } catch let e as InferenceError { throw NodeError(e.reason) }
        } else if let f = a.float("value_float") {
            graph.initializers[name] = Tensor(shape: [], data: [f])
        } else if let fs = a.floats("value_floats") {
            graph.initializers[name] = Tensor(shape: [fs.count], data: fs)
        } else if let i = a.int("value_int") {
            ints[name] = [i]
        } else if let i = a.ints("value_ints") {
            ints[name] = i
        } else {
            throw NodeError("only tensor, float(s) and int(s) constants are supported")
        }
    }

    // Shape arithmetic on int64 constants (Reshape targets computed as Shape → Gather → Unsqueeze → Concat).

    private mutating func shapeOf(_ node: Onnx_NodeProto, _ a: NodeAttributes) throws {
        guard let shape = shapes[node.input[0]] else { throw NodeError("input '\(node.input[0])' has no known shape") }
        let full = [0] + shape   // 0 stands for the batch size, which Reshape copies
        // Opset 15 `start` / `end`: negative counts from the end, out of range is clamped.
        func clamp(_ i: Int) -> Int { min(max(i < 0 ? i + full.count : i, 0), full.count) }
        let start = clamp(a.int("start") ?? 0), end = clamp(a.int("end") ?? full.count)
        ints[node.output[0]] = start < end ? Array(full[start..<end]) : []
    }

    private mutating func gather(_ node: Onnx_NodeProto, _ a: NodeAttributes) throws {
        guard node.input.count == 2, let data = ints[node.input[0]], let index = ints[node.input[1]],
              (a.int("axis") ?? 0) == 0 else {
            throw NodeError("Gather of activations is not supported (only of constant shape values, on axis 0)")
        }
        ints[node.output[0]] = try index.map { i in
            let j = i < 0 ? i + data.count : i
            guard data.indices.contains(j) else { throw NodeError("index \(i) out of range") }
            return data[j]
        }
    }

    /// Squeeze / Unsqueeze of an activation: a reshape that keeps the batch dimension (axes from
    /// the `axes` input since opset 13, the attribute before).
    private mutating func squeeze(_ node: Onnx_NodeProto, _ a: NodeAttributes) throws {
        guard let shape = shapes[node.input[0]] else { throw NodeError("input '\(node.input[0])' has no known shape") }
        let squeezing = node.opType == "Squeeze"
        var axes = a.ints("axes")
        if opset >= 13, node.input.count > 1, !node.input[1].isEmpty {
            guard let v = ints[node.input[1]] else { throw NodeError("axes must be a constant") }
            axes = v
        }
        guard let axes, !axes.isEmpty else {
            throw NodeError("\(node.opType) without axes is not supported (the result would depend on the batch size)")
        }
        let full = [0] + shape   // 0: the batch dimension, copied by the reshape
        let rank = squeezing ? full.count : full.count + axes.count
        let normalized = try axes.map { axis -> Int in
            guard (-rank..<rank).contains(axis) else { throw NodeError("axis \(axis) is out of range for rank \(rank)") }
            return axis < 0 ? axis + rank : axis
        }
        guard Set(normalized).count == normalized.count else { throw NodeError("axes \(axes) name an axis twice") }
        guard !normalized.contains(0) else {
            throw NodeError("axis 0 (the batch dimension) cannot be \(squeezing ? "squeezed" : "inserted")")
        }
        var target: [Int] = []
        if squeezing {
            for axis in normalized where full[axis] != 1 { throw NodeError("cannot squeeze axis \(axis) of size \(full[axis])") }
            target = full.indices.filter { !normalized.contains($0) }.map { full[$0] }
        } else {
            var rest = full.makeIterator()
            for i in 0..<rank { target.append(normalized.contains(i) ? 1 : rest.next()!) }
        }
        try add(node, .reshape(shape: target), inputs: [node.input[0]])
    }

    private mutating func intPassThrough(_ node: Onnx_NodeProto) throws {
        guard let data = ints[node.input[0]] else { throw NodeError("\(node.opType) of activations is not supported (only of constant shape values)") }
        ints[node.output[0]] = data
    }

    private mutating func concat(_ node: Onnx_NodeProto) throws {
        var out: [Int] = []
        for input in node.input {
            guard let data = ints[input] else { throw NodeError("Concat of activations is not supported (only of constant shape values)") }
            out += data
        }
        ints[node.output[0]] = out
    }
}

/// Attribute lookup by name for one ONNX node.
struct NodeAttributes {
    let byName: [String: Onnx_AttributeProto]
    init(_ list: [Onnx_AttributeProto]) { byName = Dictionary(list.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }) }
    func float(_ name: String) -> Float? { byName[name].map { $0.f } }
    func floats(_ name: String) -> [Float]? { byName[name].map { $0.floats } }
    func int(_ name: String) -> Int? { byName[name].map { Int($0.i) } }
    func ints(_ name: String) -> [Int]? { byName[name].map { $0.ints.map { Int($0) } } }
    func string(_ name: String) -> String? { byName[name].map { String(decoding: $0.s, as: UTF8.self) } }
    func tensor(_ name: String) -> Onnx_TensorProto? { byName[name].flatMap { $0.hasT ? $0.t : nil } }
}
