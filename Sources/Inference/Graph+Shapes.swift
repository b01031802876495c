// Shape inference for the graph IR. Shapes here are per sample: the batch dimension is left out,
// so an activation is `[C, H, W]` (images) or `[K]` (vectors).

extension Graph {
    /// Infers the per-sample shape of every activation value (graph inputs and node outputs).
    ///
    /// - Parameter source: the model path used in errors.
    /// - Throws: `InferenceError` naming the first node whose inputs are missing or inconsistent.
    public func inferShapes(source: String) throws -> [String: [Int]] {
        var shapes: [String: [Int]] = [:]
        for input in inputs {
            guard input.shape.count >= 1, input.shape.dropFirst().allSatisfy({ $0 > 0 }) else {
                throw InferenceError(source: source, node: input.name, op: "input",
                                     reason: "input shape \(input.shape) must be [N, ...] with fixed sizes after the batch ([N, C, H, W] for images)")
            }
            shapes[input.name] = Array(input.shape.dropFirst())
        }
        for node in nodes {
            do {
                let inputShapes: [[Int]?] = node.inputs.map { shapes[$0] }
                let shape = try Graph.outputShape(of: node, inputShapes: inputShapes, initializers: initializers)
                for output in node.outputs { shapes[output] = shape }
            } catch let error as NodeError {
                throw InferenceError(source: source, node: node.name, op: node.op.name, reason: error.reason)
            }
        }
        return shapes
    }

    /// The per-sample output shape of `node`, given its inputs' shapes (`nil` for initializers).
    static func outputShape(of node: Node, inputShapes: [[Int]?], initializers: [String: Tensor]) throws -> [Int] {
        func activation(_ i: Int) throws -> [Int] {
            guard i < node.inputs.count else { throw NodeError("missing input \(i)") }
            guard let shape = inputShapes[i] else {
                if initializers[node.inputs[i]] != nil {
                    throw NodeError("input \(i) '\(node.inputs[i])' is a constant; an activation is expected")
                }
                throw NodeError("input '\(node.inputs[i])' is not produced by any earlier node")
            }
            return shape
        }
        func constant(_ i: Int) throws -> Tensor {
            guard i < node.inputs.count, let t = initializers[node.inputs[i]] else {
                throw NodeError("input \(i) must be a constant initializer")
            }
            return t
        }
        func image(_ shape: [Int]) throws -> (c: Int, h: Int, w: Int) {
            guard shape.count == 3 else { throw NodeError("expects an NCHW input, got per-sample shape \(shape)") }
            return (shape[0], shape[1], shape[2])
        }
        func window(_ size: Int, kernel: Int, stride: Int, dilation: Int, begin: Int, end: Int) throws -> Int {
            guard kernel > 0, stride > 0, dilation > 0, begin >= 0, end >= 0 else {
                throw NodeError("kernel, stride, dilation must be positive and pads non-negative")
            }
            let out = (size + begin + end - (dilation * (kernel - 1) + 1)) / stride + 1
            guard out > 0 else { throw NodeError("window \(kernel) does not fit input size \(size)") }
            return out
        }

        switch node.op {
        case .conv(let a):
            let (c, h, w) = try image(activation(0))
            let weight = try constant(1)
            guard weight.shape.count == 4 else { throw NodeError("only 2-D convolutions are supported (weight shape \(weight.shape))") }
            guard a.groups > 0, weight.shape[0] % a.groups == 0, weight.shape[1] * a.groups == c else {
                throw NodeError("weight \(weight.shape) with \(a.groups) groups does not match \(c) input channels")
            }
            guard a.kernel == Array(weight.shape[2...]) else {
                throw NodeError("kernel \(a.kernel) does not match weight shape \(weight.shape)")
            }
            guard a.strides.count == 2, a.dilations.count == 2, a.padsBegin.count == 2, a.padsEnd.count == 2 else {
                throw NodeError("strides, dilations and pads must have two entries")
            }
            if node.inputs.count > 2, !node.inputs[2].isEmpty {
                let bias = try constant(2)
                guard bias.count == weight.shape[0] else { throw NodeError("bias has \(bias.count) values for \(weight.shape[0]) channels") }
            }
            return [weight.shape[0],
                    try window(h, kernel: a.kernel[0], stride: a.strides[0], dilation: a.dilations[0], begin: a.padsBegin[0], end: a.padsEnd[0]),
                    try window(w, kernel: a.kernel[1], stride: a.strides[1], dilation: a.dilations[1], begin: a.padsBegin[1], end: a.padsEnd[1])]
        case .batchNorm:
            let shape = try activation(0)
            _ = try image(shape)   // an unfolded batch norm runs as a 1x1 depthwise convolution
            guard node.inputs.count == 5 else { throw NodeError("expects 5 inputs (x, scale, bias, mean, var)") }
            for i in 1..<5 {
                guard try constant(i).count == shape[0] else { throw NodeError("parameter \(i) does not have \(shape[0]) values") }
            }
            return shape
        case .relu, .clip, .identity:
            return try activation(0)
        case .softmax(let axis):
            let shape = try activation(0)
            guard axis == 1 || axis == -1, shape.count == 1 else {
                throw NodeError("only softmax over the class axis of [N, K] is supported")
            }
            return shape
        case .add:
            let a = try activation(0)
            if node.inputs.count == 2, let c = initializers[node.inputs[1]] {
                // Right-aligned against [N] + a: every dimension 1 or a's, and 1 on the batch.
                let aligned = Array(repeating: 1, count: max(0, a.count + 1 - c.shape.count)) + c.shape
                guard aligned.count == a.count + 1, aligned[0] == 1, zip(aligned.dropFirst(), a).allSatisfy({ $0 == 1 || $0 == $1 }) else {
                    throw NodeError("constant of shape \(c.shape) does not broadcast against [N] + \(a) (and may not span the batch)")
                }
                return a
            }
            let b = try activation(1)
            guard a == b else { throw NodeError("operand shapes \(a) and \(b) differ (broadcasting is not supported)") }
            return a
        case .globalAvgPool:
            let (c, _, _) = try image(activation(0))
            return [c, 1, 1]
        case .avgPool(let a):
            let (c, h, w) = try image(activation(0))
            guard a.kernel.count == 2, a.strides.count == 2, a.padsBegin.count == 2, a.padsEnd.count == 2 else {
                throw NodeError("kernel, strides and pads must have two entries")
            }
            return [c, try window(h, kernel: a.kernel[0], stride: a.strides[0], dilation: 1, begin: a.padsBegin[0], end: a.padsEnd[0]),
                    try window(w, kernel: a.kernel[1], stride: a.strides[1], dilation: 1, begin: a.padsBegin[1], end: a.padsEnd[1])]
        case .flatten(let axis):
            guard axis == 1 else { throw NodeError("only Flatten(axis: 1) is supported") }
            return [try activation(0).reduce(1, *)]
        case .reshape(let target):
            // The batch dimension stays: target[0] is 0 (copy), -1 or the batch size. In the rest,
            // 0 copies the input's dimension at that position and one -1 takes what is left.
            let input = try activation(0)
            let count = input.reduce(1, *)
            let rest = Array(target.dropFirst())
            var shape = rest.enumerated().map { i, t in t == 0 && i < input.count ? input[i] : t }
            let known = shape.filter { $0 != -1 }.reduce(1, *)
            let inferred = shape.filter { $0 == -1 }.count
            guard !target.isEmpty, target[0] >= -1, target[0] != -1 || inferred == 0,
                  rest.indices.allSatisfy({ rest[$0] != 0 || $0 < input.count }), shape.allSatisfy({ $0 > 0 || $0 == -1 }),
                  inferred <= 1, inferred == 1 ? known > 0 && count % known == 0 : known == count else {
                throw NodeError("Reshape target \(target) does not keep the batch dimension and the \(count) values per sample of \(input)")
            }
            if let i = shape.firstIndex(of: -1) { shape[i] = count / known }
            return shape
        case .gemm(let a):
            // An [N, C, H, W] input is read flattened (as after GlobalAveragePool in Keras graphs).
            let x = try activation(0).reduce(1, *)
            guard !a.transA else { throw NodeError("Gemm with transA is not supported") }
            let b = try constant(1)
            guard b.shape.count == 2 else { throw NodeError("weight must be 2-D, got \(b.shape)") }
            let (k, n) = a.transB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
            guard k == x else { throw NodeError("weight \(b.shape) does not match \(x) input features") }
            if node.inputs.count > 2, !node.inputs[2].isEmpty {
                let c = try constant(2)
                guard c.count == n || c.count == 1 else { throw NodeError("bias has \(c.count) values for \(n) outputs") }
            }
            return [n]
        case .matMul:
            let x = try activation(0).reduce(1, *)
            let b = try constant(1)
            guard b.shape.count == 2, b.shape[0] == x else {
                throw NodeError("MatMul of \(x) by constant \(b.shape) is not a supported [N, K] x [K, M] product")
            }
            return [b.shape[1]]
        }
    }
}
