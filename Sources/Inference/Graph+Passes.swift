// Graph passes run by `Model.init` before the oneDNN runtime compiles the graph:
// verification, identity removal, batch-norm folding and trailing-softmax removal.
// (Activation and residual fusion happen when the runtime lowers the graph; see Network.swift.)

extension Graph {
    /// Checks that every node input exists, every initializer is used, outputs are computed and
    /// shapes are consistent. Returns the per-sample shapes.
    public func verify(source: String) throws -> [String: [Int]] {
        let used = Set(nodes.flatMap(\.inputs))
        if let unused = initializers.keys.sorted().first(where: { !used.contains($0) }) {
            throw InferenceError(source: source, node: unused, op: "initializer", reason: "weight is not used by any node")
        }
        var produced = Set(inputs.map(\.name))
        for node in nodes {
            for input in node.inputs where !input.isEmpty && !produced.contains(input) && initializers[input] == nil {
                throw InferenceError(source: source, node: node.name, op: node.op.name,
                                     reason: "input '\(input)' is neither a graph input, a weight nor an earlier node's output")
            }
            for output in node.outputs {
                guard produced.insert(output).inserted else {
                    throw InferenceError(source: source, node: node.name, op: node.op.name, reason: "value '\(output)' is produced twice")
                }
            }
        }
        let shapes = try inferShapes(source: source)
        guard !outputs.isEmpty else { throw InferenceError(source: source, reason: "the graph has no outputs") }
        // The runtime keeps a Reshape's input memory (and its dimensions): a result that is not
        // flat may only be a graph output or be read flattened (Gemm, MatMul) or reshaped again.
        for node in nodes {
            guard case .reshape = node.op, let out = shapes[node.outputs[0]], out.count > 1,
                  out != shapes[node.inputs[0]] else { continue }
            for reader in nodes where reader.inputs.contains(node.outputs[0]) {
                switch reader.op {
                case .gemm, .matMul, .reshape, .flatten, .identity: continue
                default:
                    throw InferenceError(source: source, node: node.name, op: node.op.name,
                                         reason: "a Reshape to per-sample shape \(out) may only be a graph output or feed Gemm/MatMul/Reshape, not \(reader.op.name) '\(reader.name)'")
                }
            }
        }
        for output in outputs where shapes[output.name] == nil {
            throw InferenceError(source: source, node: output.name, op: "output", reason: "output is not computed by any node")
        }
        return shapes
    }

    /// Number of nodes reading `value`, plus one if it is a graph output.
    func useCount(_ value: String) -> Int {
        nodes.reduce(0) { $0 + $1.inputs.filter { $0 == value }.count } + (outputs.contains { $0.name == value } ? 1 : 0)
    }

    /// Replaces every use of `old` (node inputs and graph outputs' producer names) by `new`.
    mutating func rename(_ old: String, to new: String) {
        for i in nodes.indices {
            nodes[i].inputs = nodes[i].inputs.map { $0 == old ? new : $0 }
            nodes[i].outputs = nodes[i].outputs.map { $0 == old ? new : $0 }
        }
    }

    /// Removes Identity / Dropout nodes, keeping graph output names stable.
    mutating func removeIdentities() {
        while let i = nodes.firstIndex(where: { $0.op == .identity }) {
            let node = nodes.remove(at: i)
            let (input, output) = (node.inputs[0], node.outputs[0])
            let outputIsGraphOutput = outputs.contains { $0.name == output }
            let inputIsFixed = inputs.contains { $0.name == input } || outputs.contains { $0.name == input }
            if outputIsGraphOutput && !inputIsFixed {
                rename(input, to: output)   // the producer now writes the output name directly
            } else if outputIsGraphOutput {
                nodes.insert(node, at: i)   // keep a real copy: both names are graph values
                return
            } else {
                rename(output, to: input)
            }
        }
    }

    /// Folds each BatchNormalization into the convolution before it (when that convolution's
    /// output feeds only the batch norm); any other batch norm becomes a 1x1 depthwise convolution.
    mutating func foldBatchNorms() {
        var i = 0
        while i < nodes.count {
            guard case .batchNorm(let eps) = nodes[i].op else { i += 1; continue }
            let bn = nodes[i]
            let scale = initializers[bn.inputs[1]]!.data, shift = initializers[bn.inputs[2]]!.data
            let mean = initializers[bn.inputs[3]]!.data, variance = initializers[bn.inputs[4]]!.data
            let factor = zip(scale, variance).map { $0 / ($1 + eps).squareRoot() }
            let bias = (0..<factor.count).map { shift[$0] - mean[$0] * factor[$0] }
            for name in bn.inputs[1...] where useCount(name) == 1 { initializers[name] = nil }

            if let p = nodes.firstIndex(where: { $0.outputs == [bn.inputs[0]] }), case .conv = nodes[p].op,
               useCount(bn.inputs[0]) == 1, !outputs.contains(where: { $0.name == bn.inputs[0] }) {
                var conv = nodes[p]
                var weight = initializers[conv.inputs[1]]!
                let perChannel = weight.count / weight.shape[0]
                for o in 0..<weight.shape[0] {
                    for j in 0..<perChannel { weight.data[o * perChannel + j] *= factor[o] }
                }
                var newBias = bias
                if conv.inputs.count > 2, let old = initializers[conv.inputs[2]] {
                    for o in newBias.indices { newBias[o] += old.data[o] * factor[o] }
                }
                let wName = conv.name + "/folded_weight", bName = conv.name + "/folded_bias"
                if useCount(conv.inputs[1]) == 1 { initializers[conv.inputs[1]] = nil }
                if conv.inputs.count > 2, useCount(conv.inputs[2]) == 1 { initializers[conv.inputs[2]] = nil }
                initializers[wName] = weight
                initializers[bName] = Tensor(shape: [newBias.count], data: newBias)
                conv.inputs = [conv.inputs[0], wName, bName]
                conv.outputs = bn.outputs
                nodes[p] = conv
                nodes.remove(at: i)
            } else {
                let c = factor.count
                let wName = bn.name + "/scale_weight", bName = bn.name + "/scale_bias"
                initializers[wName] = Tensor(shape: [c, 1, 1, 1], data: factor)
                initializers[bName] = Tensor(shape: [c], data: bias)
                nodes[i] = Node(name: bn.name, op: .conv(ConvAttributes(groups: c, kernel: [1, 1])),
                                inputs: [bn.inputs[0], wName, bName], outputs: bn.outputs)
                i += 1
            }
        }
    }

    /// A Softmax that produces a graph output is dropped so the output carries raw logits
    /// (`Labels.softmax` computes probabilities); `softmaxRemoved` records each renamed output.
    mutating func removeTrailingSoftmax() {
        for (k, output) in outputs.enumerated() {
            guard let i = nodes.firstIndex(where: { $0.outputs == [output.name] }), case .softmax = nodes[i].op,
                  useCount(output.name) == 1 else { continue }
            softmaxRemoved[nodes[i].inputs[0]] = output.name
            outputs[k].name = nodes[i].inputs[0]
            nodes.remove(at: i)
        }
    }
}
