// TFLite flatbuffer → graph IR (Inference.Graph), for float32 and uint8/int8 quantized models.
//
// Specs followed:
//   - the TFLite schema, tensorflow/compiler/mlir/lite/schema/schema.fbs (v3; the tables read are
//     listed in TFLiteSchema.swift), and the operator semantics of TFLite's reference kernels:
//     CONV_2D (filter OHWI), DEPTHWISE_CONV_2D (filter [1, H, W, C * multiplier]), AVERAGE_POOL_2D
//     (padding excluded from the divisor), ADD, MEAN, RESHAPE, SOFTMAX (beta), FULLY_CONNECTED
//     (weights [out, in]), QUANTIZE / DEQUANTIZE, RELU / RELU6 and the fused activations
//     (ActivationFunctionType NONE, RELU, RELU_N1_TO_1, RELU6);
//   - TFLite quantization (https://ai.google.dev/edge/litert/models/quantization_spec):
//     real = scale * (q - zero_point), one scale per tensor or one per slice of `quantized_dimension`;
//     int32 biases have zero point 0 and scale input_scale * weight_scale (stored in the file);
//   - TensorFlow's "SAME" padding: out = ceil(in / s), total = max((out - 1) * s + (k - 1) * d + 1 - in, 0),
//     top/left = total / 2, the extra pixel at bottom/right; "VALID": no padding.
//
// Quantized weights are dequantized to float32 here (the engine computes in fp32 or bf16), so the
// activations' own quantization is ignored: QUANTIZE/DEQUANTIZE of an activation is an identity,
// and the model's outputs are real values. A final SOFTMAX stays in the graph and is dropped by
// `Model` (framepipe applies softmax itself), so the class output carries the real logits, never
// the uint8 probabilities of a quantized model. The NHWC input becomes the IR's NCHW input
// `[-1, C, H, W]`; every per-sample shape tracked here is NCHW `[C, H, W]` or a vector `[K]`.
#if canImport(Inference)
import Inference
#endif

/// A problem with one operator; the importer adds the model path, tensor and operator names.
struct OpError: Error {
    var reason: String
    init(_ reason: String) { self.reason = reason }
}

/// Converts one decoded `.tflite` file into a `Graph`.
struct TFLiteImporter {
    let source: String
    let file: TFLiteFile

    /// An activation of the graph being built: IR name and per-sample NCHW shape (`[C, H, W]` or `[K]`).
    struct Value {
        var name: String
        var shape: [Int]
        var isVector: Bool { shape.count == 1 }
        /// `[C, H, W]`, a vector read as `[K, 1, 1]`.
        var image: (c: Int, h: Int, w: Int) { isVector ? (shape[0], 1, 1) : (shape[0], shape[1], shape[2]) }
    }

    private var nodes: [Node] = []
    private var initializers: [String: Tensor] = [:]
    private var values: [Int: Value] = [:]           // tensor index -> activation
    private var constantAlias: [Int: Int] = [:]      // DEQUANTIZE output -> its constant input
    private var names = Set<String>()
    private var pooled: [Value] = []                 // flattened global-average-pool outputs, in order
    private var weightElements = 0                   // floats materialised so far (see `constant`)

    /// Largest input or activation accepted (elements per sample): far above any image model.
    static let maxInputElements = 1 << 26

    init(source: String, file: TFLiteFile) {
        self.source = source
        self.file = file
    }

    /// Decodes `bytes` as a `.tflite` file and converts it. Throws `InferenceError` naming `source`.
    static func importGraph(bytes: [UInt8], source: String) throws -> Graph {
        do {
            var importer = TFLiteImporter(source: source, file: try TFLiteFile(bytes: bytes))
            return try importer.convert()
        } catch let error as FlatBufferError {
            // Also from an operator's options table, read while converting.
            throw InferenceError(source: source, reason: "malformed TFLite file: \(error.description)")
        }
    }

    // MARK: - Graph

    mutating func convert() throws -> Graph {
        guard file.inputs.count == 1 else {
            throw InferenceError(source: source, reason: "expected one image input, the model has \(file.inputs.count)")
        }
        let inputIndex = file.inputs[0]
        let input = try tensor(inputIndex, role: "input")
        guard input.shape.count == 4, input.shape[0] == 1 || input.shape[0] == -1,
              input.shape.dropFirst().allSatisfy({ $0 > 0 }) else {
            throw InferenceError(source: source, node: input.name, op: "input",
                                 reason: "input must be an NHWC image [1, H, W, C], got shape \(input.shape)")
        }
        guard [.float32, .uint8, .int8].contains(input.type) else {
            throw InferenceError(source: source, node: input.name, op: "input",
                                 reason: "input type \(input.typeName) is not float32, uint8 or int8")
        }
        let (h, w, c) = (input.shape[1], input.shape[2], input.shape[3])
        guard h <= 1 << 14, w <= 1 << 14, c <= 1 << 14, h * w * c <= TFLiteImporter.maxInputElements else {
            throw InferenceError(source: source, node: input.name, op: "input", reason: "input shape \(input.shape) is too large")
        }
        let inputName = uniqueName(input.name, index: inputIndex)
        values[inputIndex] = Value(name: inputName, shape: [c, h, w])
        let graphInput = ValueInfo(name: inputName, shape: [-1, c, h, w])

        for (i, op) in file.operators.enumerated() {
            let label = op.outputs.first.flatMap { $0 >= 0 && $0 < file.tensors.count ? file.tensors[$0].name : nil } ?? "operator \(i)"
            let opName = TFLiteImporter.opName(op)
            do {
                try convert(op, label: label)
            } catch let error as OpError {
                throw InferenceError(source: source, node: label, op: opName, reason: error.reason)
            }
        }

        var outputs: [ValueInfo] = []
        for index in file.outputs {
            guard let value = values[index] else {
                let name = index >= 0 && index < file.tensors.count ? file.tensors[index].name : "#\(index)"
                throw InferenceError(source: source, node: name, op: "output", reason: "output is not computed by any operator")
            }
            outputs.append(ValueInfo(name: value.name, shape: [-1] + value.shape))
        }
        guard !outputs.isEmpty else { throw InferenceError(source: source, reason: "the model has no outputs") }

        // The class output: a final softmax's input is named `logits` (Model drops the softmax).
        for output in outputs {
            if let softmax = nodes.first(where: { $0.outputs == [output.name] && $0.op == .softmax(axis: 1) }),
               !names.contains("logits"), !outputs.contains(where: { $0.name == softmax.inputs[0] }) {
                rename(softmax.inputs[0], to: "logits")
            }
        }
        // The embedding: the last global average pool, flattened, as the `features` output.
        if let last = pooled.last, !names.contains("features"), !outputs.contains(where: { $0.name == last.name }) {
            rename(last.name, to: "features")
            outputs.append(ValueInfo(name: "features", shape: [-1] + last.shape))
        }
        return Graph(inputs: [graphInput], outputs: outputs, nodes: nodes, initializers: initializers)
    }

    private mutating func rename(_ old: String, to new: String) {
        for i in nodes.indices {
            nodes[i].inputs = nodes[i].inputs.map { $0 == old ? new : $0 }
            nodes[i].outputs = nodes[i].outputs.map { $0 == old ? new : $0 }
        }
        for (k, v) in values where v.name == old { values[k]!.name = new }
        names.insert(new)
    }

    /// The operator's name in messages (`CONV_2D`, `CUSTOM:Foo`, `builtin 83`).
    static func opName(_ op: TFLiteOperator) -> String {
        switch TFLiteOpCode(rawValue: op.code) {
        case .add: return "ADD"
        case .averagePool2D: return "AVERAGE_POOL_2D"
        case .conv2D: return "CONV_2D"
        case .depthwiseConv2D: return "DEPTHWISE_CONV_2D"
        case .dequantize: return "DEQUANTIZE"
        case .fullyConnected: return "FULLY_CONNECTED"
        case .relu: return "RELU"
        case .relu6: return "RELU6"
        case .reshape: return "RESHAPE"
        case .softmax: return "SOFTMAX"
        case .mean: return "MEAN"
        case .quantize: return "QUANTIZE"
        case nil: return op.code == 32 ? "CUSTOM:\(op.customCode ?? "?")" : "builtin operator \(op.code)"
        }
    }

    // MARK: - Operators

    private mutating func convert(_ op: TFLiteOperator, label: String) throws {
        guard let code = TFLiteOpCode(rawValue: op.code) else {
            throw OpError("operator is not supported (supported: ADD, AVERAGE_POOL_2D, CONV_2D, DEPTHWISE_CONV_2D, "
                            + "DEQUANTIZE, FULLY_CONNECTED, MEAN, QUANTIZE, RELU, RELU6, RESHAPE, SOFTMAX)")
        }
        guard op.outputs.count == 1 else { throw OpError("expected one output, got \(op.outputs.count)") }
        let out = op.outputs[0]
        _ = try tensorOrThrow(out)
        guard values[out] == nil, constantAlias[out] == nil else { throw OpError("output tensor #\(out) is written twice") }

        switch code {
        case .conv2D, .depthwiseConv2D:
            try convolution(op, depthwise: code == .depthwiseConv2D, label: label)
        case .averagePool2D:
            let x = try activation(op, 0)
            let o = try options(op, type: 5, "Pool2DOptions")
            let kernel = [Int(try o.i32(4)), Int(try o.i32(3))], strides = [Int(try o.i32(2)), Int(try o.i32(1))]
            let (begin, end, size) = try window(x, kernel: kernel, strides: strides, dilations: [1, 1], padding: try o.i8(0))
            let fused = try o.i8(5)
            if size == [1, 1], begin == [0, 0], end == [0, 0], kernel == [x.image.h, x.image.w] {
                try globalPool(x, out: out, fused: fused, label: label)
            } else {
                let attrs = PoolAttributes(kernel: kernel, strides: strides, padsBegin: begin, padsEnd: end, countIncludePad: false)
                try emit(.avgPool(attrs), inputs: [x.name], out: out, shape: [x.image.c] + size, fused: fused, label: label)
            }
        case .mean:
            let x = try activation(op, 0)
            guard !x.isVector else { throw OpError("MEAN of a vector is not supported") }
            let axes = Set(try intConstant(op, 1).map { $0 < 0 ? $0 + 4 : $0 })
            guard axes == [1, 2] else { throw OpError("only MEAN over the spatial axes [1, 2] of NHWC is supported, got \(axes.sorted())") }
            try globalPool(x, out: out, fused: 0, label: label)
        case .add:
            guard op.inputs.count == 2 else { throw OpError("expected 2 inputs, got \(op.inputs.count)") }
            let a = try activation(op, 0), b = try activation(op, 1)
            guard a.shape == b.shape else {
                throw OpError("operand shapes \(a.shape) and \(b.shape) differ (broadcasting is not supported)")
            }
            let fused = try options(op, type: 11, "AddOptions", required: false)?.i8(0) ?? 0
            try emit(.add, inputs: [a.name, b.name], out: out, shape: a.shape, fused: fused, label: label)
        case .fullyConnected:
            let x = try activation(op, 0)
            let o = try options(op, type: 8, "FullyConnectedOptions", required: false)
            guard try o?.i8(1) ?? 0 == 0 else { throw OpError("shuffled weights formats are not supported") }
            let (c, h, w) = x.image
            guard h == 1, w == 1 else {
                throw OpError("input \(x.shape) has a spatial extent: flattening NHWC and NCHW orders differ (not supported)")
            }
            try gemm(x: x, weightIndex: op.inputs.count > 1 ? op.inputs[1] : -1, biasIndex: op.inputs.count > 2 ? op.inputs[2] : -1,
                     inFeatures: c, out: out, fused: try o?.i8(0) ?? 0, label: label)
        case .reshape:
            let x = try activation(op, 0)
            let target = try tensorOrThrow(out).shape
            let count = x.shape.reduce(1, *)
            guard target.dropFirst().reduce(1, *) == count || target.reduce(1, *) == count else {
                throw OpError("target shape \(target) does not hold the \(count) values of \(x.shape)")
            }
            guard x.image.h == 1 && x.image.w == 1 else {
                throw OpError("reshaping \(x.shape) with a spatial extent is not supported (NHWC and NCHW orders differ)")
            }
            let spatial = target.count == 4 && target[1] * target[2] > 1
            guard !spatial else { throw OpError("reshaping to a spatial shape \(target) is not supported") }
            if target.count == 4 {
                values[out] = x   // [1, 1, 1, K] of a [K] or [K, 1, 1] value: same data
            } else if x.isVector {
                values[out] = x
            } else {
                try emit(.flatten(axis: 1), inputs: [x.name], out: out, shape: [count], fused: 0, label: label)
            }
        case .softmax:
            let x = try activation(op, 0)
            guard x.isVector else { throw OpError("only SOFTMAX over a [N, K] class vector is supported, got \(x.shape)") }
            let beta = try options(op, type: 9, "SoftmaxOptions", required: false)?.f32(0, default: 1) ?? 1
            guard beta == 1 else { throw OpError("SOFTMAX with beta \(beta) is not supported (only 1)") }
            try emit(.softmax(axis: 1), inputs: [x.name], out: out, shape: x.shape, fused: 0, label: label)
        case .relu, .relu6:
            let x = try activation(op, 0)
            try emit(code == .relu ? .relu : .clip(min: 0, max: 6), inputs: [x.name], out: out, shape: x.shape, fused: 0, label: label)
        case .quantize, .dequantize:
            guard op.inputs.count == 1 else { throw OpError("expected 1 input, got \(op.inputs.count)") }
            if try isConstant(op.inputs[0]) {
                constantAlias[out] = op.inputs[0]
            } else {
                values[out] = try activation(op, 0)   // the value is already real in the fp32 graph
            }
        }
    }

    private mutating func convolution(_ op: TFLiteOperator, depthwise: Bool, label: String) throws {
        let x = try activation(op, 0)
        guard op.inputs.count >= 2, op.inputs.count <= 3 else { throw OpError("expected 2 or 3 inputs, got \(op.inputs.count)") }
        let o = try options(op, type: depthwise ? 2 : 1, depthwise ? "DepthwiseConv2DOptions" : "Conv2DOptions")
        let strides = [Int(try o.i32(2)), Int(try o.i32(1))]
        let dilations = depthwise ? [Int(try o.i32(6, default: 1)), Int(try o.i32(5, default: 1))]
                                  : [Int(try o.i32(5, default: 1)), Int(try o.i32(4, default: 1))]
        let fused = try o.i8(depthwise ? 4 : 3)
        let padding = try o.i8(0)
        let filter = try constant(op.inputs[1], role: "filter")
        guard filter.shape.count == 4 else { throw OpError("filter shape \(filter.shape) is not 4-D") }
        let (c, _, _) = x.image
        let kernel = [filter.shape[1], filter.shape[2]]
        let (begin, end, size) = try window(x, kernel: kernel, strides: strides, dilations: dilations, padding: padding)

        let outChannels: Int, groups: Int
        var weight: [Float]
        if depthwise {
            outChannels = filter.shape[3]
            guard filter.shape[0] == 1, outChannels % c == 0 else {
                throw OpError("filter \(filter.shape) does not fit \(c) input channels")
            }
            groups = c
            // [1, kH, kW, O] -> [O, 1, kH, kW]
            let taps = kernel[0] * kernel[1]
            weight = [Float](repeating: 0, count: filter.data.count)
            for t in 0..<taps { for oc in 0..<outChannels { weight[oc * taps + t] = filter.data[t * outChannels + oc] } }
        } else {
            outChannels = filter.shape[0]
            let perGroup = filter.shape[3]
            guard perGroup > 0, c % perGroup == 0, outChannels % (c / perGroup) == 0 else {
                throw OpError("filter \(filter.shape) does not fit \(c) input channels")
            }
            groups = c / perGroup
            if x.image.h == 1, x.image.w == 1, kernel == [1, 1], groups == 1 {
                // A 1x1 convolution of a 1x1 map (the classifier after the global pool) is a Gemm.
                try gemm(x: x, weightIndex: op.inputs[1], biasIndex: op.inputs.count > 2 ? op.inputs[2] : -1,
                         inFeatures: c, out: op.outputs[0], fused: fused, label: label)
                return
            }
            // [O, kH, kW, I] -> [O, I, kH, kW]
            let (kh, kw, ci) = (kernel[0], kernel[1], perGroup)
            weight = [Float](repeating: 0, count: filter.data.count)
            for oc in 0..<outChannels { for y in 0..<kh { for xw in 0..<kw { for i in 0..<ci {
                weight[((oc * ci + i) * kh + y) * kw + xw] = filter.data[((oc * kh + y) * kw + xw) * ci + i]
            } } } }
        }
        let wName = uniqueName(label + "/weight", index: -1)
        initializers[wName] = Tensor(shape: [outChannels, c / groups, kernel[0], kernel[1]], data: weight)
        var inputs = [x.name, wName]
        if op.inputs.count > 2, op.inputs[2] >= 0 {
            let bias = try constant(op.inputs[2], role: "bias")
            guard bias.data.count == outChannels else { throw OpError("bias has \(bias.data.count) values for \(outChannels) channels") }
            let bName = uniqueName(label + "/bias", index: -1)
            initializers[bName] = Tensor(shape: [outChannels], data: bias.data)
            inputs.append(bName)
        }
        let attrs = ConvAttributes(groups: groups, kernel: kernel, strides: strides, dilations: dilations,
                                   padsBegin: begin, padsEnd: end)
        try emit(.conv(attrs), inputs: inputs, out: op.outputs[0], shape: [outChannels] + size, fused: fused, label: label)
    }

    /// `y = x · Wᵀ + b` with a TFLite `[out, in]` (or `[out, 1, 1, in]`) weight.
    private mutating func gemm(x: Value, weightIndex: Int, biasIndex: Int, inFeatures k: Int, out: Int,
                               fused: Int8, label: String) throws {
        guard weightIndex >= 0 else { throw OpError("missing weights") }
        let weight = try constant(weightIndex, role: "weights")
        guard weight.shape.count >= 2, weight.shape[0] > 0, weight.data.count == weight.shape[0] * k else {
            throw OpError("weights \(weight.shape) do not match \(x.shape) inputs")
        }
        let n = weight.shape[0]
        let wName = uniqueName(label + "/weight", index: -1)
        initializers[wName] = Tensor(shape: [n, k], data: weight.data)
        var inputs = [x.name, wName]
        if biasIndex >= 0 {
            let bias = try constant(biasIndex, role: "bias")
            guard bias.data.count == n else { throw OpError("bias has \(bias.data.count) values for \(n) outputs") }
            let bName = uniqueName(label + "/bias", index: -1)
            initializers[bName] = Tensor(shape: [n], data: bias.data)
            inputs.append(bName)
        }
        try emit(.gemm(GemmAttributes(transB: true)), inputs: inputs, out: out, shape: [n], fused: fused, label: label)
    }

    private mutating func globalPool(_ x: Value, out: Int, fused: Int8, label: String) throws {
        guard fused == 0 else { throw OpError("a fused activation on a global pool is not supported") }
        let pooledName = uniqueName(label + "/pooled", index: -1)
        nodes.append(Node(name: label, op: .globalAvgPool, inputs: [x.name], outputs: [pooledName]))
        try emit(.flatten(axis: 1), inputs: [pooledName], out: out, shape: [x.image.c], fused: 0, label: label)
        pooled.append(values[out]!)
    }

    /// Appends `op` writing tensor `out`, followed by the fused activation when there is one.
    private mutating func emit(_ op: Op, inputs: [String], out: Int, shape: [Int], fused: Int8, label: String) throws {
        let declared = try tensorOrThrow(out).shape
        guard shape.allSatisfy({ $0 > 0 && $0 <= TFLiteImporter.maxInputElements }),
              shape.reduce(1, { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }) <= TFLiteImporter.maxInputElements else {
            throw OpError("output \(shape) per sample is too large (more than \(TFLiteImporter.maxInputElements) values)")
        }
        if declared.count == 4, shape.count == 3, declared.dropFirst() != [shape[1], shape[2], shape[0]] {
            throw OpError("computes [\(shape[1]), \(shape[2]), \(shape[0])] per sample but the file declares \(declared)")
        }
        let name = uniqueName(file.tensors[out].name, index: out)
        let activation: Op?
        switch fused {
        case 0: activation = nil
        case 1: activation = .relu
        case 2: activation = .clip(min: -1, max: 1)
        case 3: activation = .clip(min: 0, max: 6)
        default: throw OpError("fused activation \(fused) is not supported (NONE, RELU, RELU_N1_TO_1, RELU6)")
        }
        if let activation {
            let pre = uniqueName(name + "/pre_activation", index: -1)
            nodes.append(Node(name: label, op: op, inputs: inputs, outputs: [pre]))
            nodes.append(Node(name: label, op: activation, inputs: [pre], outputs: [name]))
        } else {
            nodes.append(Node(name: label, op: op, inputs: inputs, outputs: [name]))
        }
        values[out] = Value(name: name, shape: shape)
    }

    /// Pads and output size of a window op under TF "SAME" (0) or "VALID" (1) padding.
    private func window(_ x: Value, kernel: [Int], strides: [Int], dilations: [Int], padding: Int8)
        throws -> (begin: [Int], end: [Int], size: [Int]) {
        let (_, h, w) = x.image
        guard kernel.allSatisfy({ $0 > 0 && $0 <= 1 << 12 }), strides.allSatisfy({ $0 > 0 && $0 <= 1 << 12 }),
              dilations.allSatisfy({ $0 > 0 && $0 <= 1 << 12 }) else {
            throw OpError("kernel \(kernel), strides \(strides) and dilations \(dilations) must be positive")
        }
        var begin = [0, 0], end = [0, 0], size = [0, 0]
        for (d, input) in [h, w].enumerated() {
            let span = (kernel[d] - 1) * dilations[d] + 1
            switch padding {
            case 0:
                size[d] = (input + strides[d] - 1) / strides[d]
                let total = max((size[d] - 1) * strides[d] + span - input, 0)
                begin[d] = total / 2
                end[d] = total - begin[d]
            case 1:
                guard input >= span else { throw OpError("window \(span) does not fit input size \(input) (VALID padding)") }
                size[d] = (input - span) / strides[d] + 1
            default:
                throw OpError("unknown padding \(padding) (0 SAME, 1 VALID)")
            }
        }
        return (begin, end, size)
    }

    // MARK: - Tensors

    private func tensorOrThrow(_ index: Int) throws -> TFLiteTensor {
        guard index >= 0, index < file.tensors.count else {
            throw OpError("tensor index \(index) is out of range (the subgraph has \(file.tensors.count) tensors)")
        }
        return file.tensors[index]
    }

    private func tensor(_ index: Int, role: String) throws -> TFLiteTensor {
        do { return try tensorOrThrow(index) } catch let error as OpError {
            throw InferenceError(source: source, node: role, op: role, reason: error.reason)
        }
    }

    private func isConstant(_ index: Int) throws -> Bool {
        if constantAlias[index] != nil { return true }
        let t = try tensorOrThrow(index)
        return values[index] == nil && t.buffer > 0 && t.buffer < file.buffers.count && !file.buffers[t.buffer].isEmpty
    }

    /// Input `i` of `op` as an activation produced earlier (or the graph input).
    private func activation(_ op: TFLiteOperator, _ i: Int) throws -> Value {
        guard i < op.inputs.count else { throw OpError("missing input \(i)") }
        let index = op.inputs[i]
        let t = try tensorOrThrow(index)
        guard let value = values[index] else {
            if try isConstant(index) { throw OpError("input \(i) ('\(t.name)') is a constant; an activation is expected") }
            throw OpError("input \(i) ('\(t.name)') is not produced by an earlier operator")
        }
        return value
    }

    /// The options table of `op`, checked to be of the union type the operator expects.
    private func options(_ op: TFLiteOperator, type: UInt8, _ name: String, required: Bool = true) throws -> FBTable? {
        guard let table = op.options else {
            if required { throw OpError("missing \(name)") }
            return nil
        }
        guard op.optionsType == type else { throw OpError("options are of union type \(op.optionsType), expected \(name)") }
        return table
    }

    private func options(_ op: TFLiteOperator, type: UInt8, _ name: String) throws -> FBTable {
        try options(op, type: type, name, required: true)!
    }

    /// A constant int32 input (MEAN axes), as Ints.
    private func intConstant(_ op: TFLiteOperator, _ i: Int) throws -> [Int] {
        guard i < op.inputs.count else { throw OpError("missing input \(i)") }
        let t = try tensorOrThrow(op.inputs[i])
        guard t.type == .int32 else { throw OpError("input \(i) must be an int32 constant, got \(t.typeName)") }
        let (range, count) = try data(of: t, index: op.inputs[i])
        let bytes = file.buffer.bytes
        return (0..<count).map { k in
            let at = range.lowerBound + 4 * k
            return Int(Int32(bitPattern: UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24))
        }
    }

    /// A tensor's data bytes and element count, checked against its shape and type.
    private func data(of t: TFLiteTensor, index: Int) throws -> (Range<Int>, Int) {
        guard let type = t.type else { throw OpError("tensor '\(t.name)' has unsupported type \(t.typeName)") }
        guard t.buffer > 0, t.buffer < file.buffers.count, !file.buffers[t.buffer].isEmpty else {
            throw OpError("tensor '\(t.name)' has no data (buffer \(t.buffer) of \(file.buffers.count))")
        }
        var count = 1
        for d in t.shape {
            guard d > 0 else { throw OpError("tensor '\(t.name)' has shape \(t.shape)") }
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, p <= 1 << 31 else { throw OpError("tensor '\(t.name)' shape \(t.shape) is too large") }
            count = p
        }
        let range = file.buffers[t.buffer]
        guard range.count == count * type.size else {
            throw OpError("tensor '\(t.name)' \(t.shape) \(type) needs \(count * type.size) bytes, its buffer has \(range.count)")
        }
        return (range, count)
    }

    /// A constant tensor as float32 in TFLite's layout, dequantized when it is quantized.
    private mutating func constant(_ index: Int, role: String) throws -> (shape: [Int], data: [Float]) {
        var index = index
        var hops = 0
        while let alias = constantAlias[index] {
            index = alias
            hops += 1
            guard hops < 64 else { throw OpError("\(role): constant alias chain too long") }
        }
        let t = try tensorOrThrow(index)
        guard values[index] == nil else { throw OpError("\(role) '\(t.name)' must be a constant, it is an activation") }
        let (range, count) = try data(of: t, index: index)
        // Every stored element becomes at most one float, unless a hostile file makes thousands of
        // operators share one big tensor: bound the total by the file's size.
        weightElements += count
        guard weightElements <= file.buffer.count + (1 << 22) else {
            throw OpError("\(role) '\(t.name)': the operators' weights add up to more elements than the file could hold")
        }
        let floats: [Float] = file.buffer.bytes.withUnsafeBytes { raw in
            let base = raw.baseAddress! + range.lowerBound
            switch t.type! {
            case .float32: return (0..<count).map { base.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self) }.map { Float(bitPattern: UInt32(littleEndian: $0)) }
            case .float16: return (0..<count).map { Float(Float16(bitPattern: UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)))) }
            case .uint8: return (0..<count).map { Float(base.load(fromByteOffset: $0, as: UInt8.self)) }
            case .int8: return (0..<count).map { Float(base.load(fromByteOffset: $0, as: Int8.self)) }
            case .int32: return (0..<count).map { Float(Int32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
            case .int64: return (0..<count).map { Float(Int64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) }
            }
        }
        let isFloat = t.type == .float32 || t.type == .float16
        guard let q = t.quantization, !isFloat else {
            guard isFloat else { throw OpError("\(role) '\(t.name)' is \(t.typeName) without quantization parameters") }
            return (t.shape, floats)
        }
        // real = scale * (q - zero_point), per tensor or per slice of `dimension`.
        let channels = q.scale.count
        guard q.zeroPoint.isEmpty || q.zeroPoint.count == channels else {
            throw OpError("\(role) '\(t.name)' has \(channels) scales but \(q.zeroPoint.count) zero points")
        }
        guard q.scale.allSatisfy({ $0.isFinite && $0 > 0 }) else { throw OpError("\(role) '\(t.name)' has a non-positive or non-finite scale") }
        let zero = q.zeroPoint.map { Float(clamping: $0) }
        if channels == 1 {
            let (s, z) = (q.scale[0], zero.first ?? 0)
            return (t.shape, floats.map { s * ($0 - z) })
        }
        guard q.dimension >= 0, q.dimension < t.shape.count, t.shape[q.dimension] == channels else {
            throw OpError("\(role) '\(t.name)' \(t.shape) has \(channels) per-channel scales along dimension \(q.dimension)")
        }
        let inner = t.shape[(q.dimension + 1)...].reduce(1, *)
        var result = floats
        for i in result.indices {
            let ch = (i / inner) % channels
            result[i] = q.scale[ch] * (result[i] - (zero.isEmpty ? 0 : zero[ch]))
        }
        return (t.shape, result)
    }

    /// A unique IR value name: the tensor's name when free, else the name with `#index` (or a counter).
    private mutating func uniqueName(_ preferred: String, index: Int) -> String {
        var name = preferred.isEmpty ? "tensor\(index)" : preferred
        if names.contains(name) {
            var k = max(index, 1)
            while names.contains("\(name)#\(k)") { k += 1 }
            name = "\(name)#\(k)"
        }
        names.insert(name)
        return name
    }
}

private extension Float {
    init(clamping v: Int64) { self = Float(Swift.max(Swift.min(v, 1 << 24), -(1 << 24))) }
}
