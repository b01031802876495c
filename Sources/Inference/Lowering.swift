// Lowers the optimised graph to runtime layers, batch-size independent: each Conv absorbs the
// Relu / Clip nodes after it as eltwise post-ops and a following residual Add as a sum post-op
// (plus activations after the Add); Flatten / Reshape become aliases; Gemm / MatMul become inner
// products with weights normalised to [out, in].
import CDNNL

/// A 3x3 depthwise convolution that may run fused into the 1x1 convolution before it
/// (`dnnl_post_ops_append_dw`); `intermediate` is the 1x1 result's value name, used when the
/// runtime keeps the two apart.
struct DepthwiseFusion {
    var name: String
    var attrs: ConvAttributes
    var weight: Tensor
    var bias: Tensor?
    var intermediate: String
    /// Activations after the depthwise convolution.
    var postOps: [PostOp]
}

/// One runtime operation over physical values.
enum Layer {
    case conv(name: String, attrs: ConvAttributes, weight: Tensor, bias: Tensor?, input: String, output: String,
              postOps: [PostOp], residual: String?, depthwise: DepthwiseFusion? = nil)
    case eltwise(name: String, alg: dnnl_alg_kind_t, alpha: Float, beta: Float, input: String, output: String)
    case add(name: String, a: String, b: String, output: String)
    case pool(name: String, attrs: PoolAttributes?, input: String, output: String)   // nil attrs: global
    case innerProduct(name: String, weight: Tensor, bias: Tensor?, input: String, output: String)

    var name: String {
        switch self {
        case let .conv(name, _, _, _, _, _, _, _, _), let .eltwise(name, _, _, _, _, _), let .add(name, _, _, _),
             let .pool(name, _, _, _), let .innerProduct(name, _, _, _, _): return name
        }
    }
    var output: String {
        switch self {
        case let .conv(_, _, _, _, _, output, _, _, _), let .eltwise(_, _, _, _, _, output), let .add(_, _, _, output),
             let .pool(_, _, _, output), let .innerProduct(_, _, _, _, output): return output
        }
    }
    var inputs: [String] {
        switch self {
        case let .conv(_, _, _, _, input, _, _, residual, _): return [input] + (residual.map { [$0] } ?? [])
        case let .eltwise(_, _, _, _, input, _), let .pool(_, _, input, _), let .innerProduct(_, _, _, input, _): return [input]
        case let .add(_, a, b, _): return [a, b]
        }
    }
}

/// The lowered network: layers plus value aliases (Flatten / Reshape outputs share their input's memory).
struct LoweredGraph {
    var layers: [Layer] = []
    /// alias value → physical value.
    var aliases: [String: String] = [:]
    /// Constant operands of `.add` layers by value name, shaped to the activation's rank
    /// (dimensions of 1 broadcast).
    var constants: [String: Tensor] = [:]

    func physical(_ value: String) -> String { aliases[value] ?? value }

    /// Lowers `model.graph`.
    init(model: Model) throws {
        let g = model.graph
        var consumed = Set<Int>()   // node indices absorbed into an earlier layer
        func consumers(_ value: String) -> [Int] { g.nodes.indices.filter { g.nodes[$0].inputs.contains(value) } }
        let graphOutputs = Set(g.outputs.map(\.name))
        func producerIndex(_ value: String) -> Int { g.nodes.firstIndex { $0.outputs.contains(value) } ?? -1 }
        func activation(_ op: Op) -> PostOp? {
            switch op {
            case .relu: return .eltwise(dnnl_eltwise_relu, 0, 0)
            case let .clip(lo, hi): return .eltwise(dnnl_eltwise_clip_v2, lo, hi)
            default: return nil
            }
        }
        for (i, node) in g.nodes.enumerated() where !consumed.contains(i) {
            let input = node.inputs.first.map { aliases[$0] ?? $0 } ?? ""
            switch node.op {
            case .conv(let attrs):
                var output = node.outputs[0]
                var postOps: [PostOp] = []
                var residual: String?
                // Absorb single-consumer chains: activations, then one residual Add, then activations.
                while !graphOutputs.contains(output), case let next = consumers(output), next.count == 1,
                      g.useCount(output) == 1 {
                    let n = g.nodes[next[0]]
                    if let post = activation(n.op) {
                        postOps.append(post)
                    } else if n.op == .add, residual == nil {
                        let other = n.inputs[0] == output ? n.inputs[1] : n.inputs[0]
                        guard other != output, g.initializers[other] == nil, producerIndex(other) < i else { break }
                        residual = aliases[other] ?? other
                        postOps.append(.sum)
                    } else {
                        break
                    }
                    consumed.insert(next[0])
                    output = n.outputs[0]
                }
                // A pointwise convolution feeding only a 3x3 depthwise one: candidates for dw fusion.
                var depthwise: DepthwiseFusion?
                let pointwise = attrs.kernel == [1, 1] && attrs.strides == [1, 1] && attrs.groups == 1
                    && attrs.padsBegin == [0, 0] && attrs.padsEnd == [0, 0] && residual == nil
                if pointwise, !graphOutputs.contains(output), case let next = consumers(output), next.count == 1,
                   g.useCount(output) == 1, case .conv(let dw) = g.nodes[next[0]].op, g.nodes[next[0]].inputs[0] == output,
                   dw.kernel == [3, 3], dw.dilations == [1, 1], dw.groups == g.initializers[node.inputs[1]]!.shape[0],
                   dw.strides[0] == dw.strides[1], [1, 2].contains(dw.strides[0]),
                   dw.padsBegin[0] == dw.padsBegin[1], dw.padsEnd[0] == dw.padsEnd[1],
                   let inShape = model.shapes[output], let outShape = model.shapes[g.nodes[next[0]].outputs[0]],
                   outShape[1] == (inShape[1] + dw.strides[0] - 1) / dw.strides[0] {
                    let dwNode = g.nodes[next[0]]
                    consumed.insert(next[0])
                    var dwOutput = dwNode.outputs[0]
                    var dwPost: [PostOp] = []
                    while !graphOutputs.contains(dwOutput), case let after = consumers(dwOutput), after.count == 1,
                          g.useCount(dwOutput) == 1, let post = activation(g.nodes[after[0]].op) {
                        dwPost.append(post)
                        consumed.insert(after[0])
                        dwOutput = g.nodes[after[0]].outputs[0]
                    }
                    depthwise = DepthwiseFusion(name: dwNode.name, attrs: dw, weight: g.initializers[dwNode.inputs[1]]!,
                                                bias: dwNode.inputs.count > 2 ? g.initializers[dwNode.inputs[2]] : nil,
                                                intermediate: output, postOps: dwPost)
                    output = dwOutput
                }
                layers.append(.conv(name: node.name, attrs: attrs, weight: g.initializers[node.inputs[1]]!,
                                    bias: node.inputs.count > 2 ? g.initializers[node.inputs[2]] : nil,
                                    input: input, output: output, postOps: postOps, residual: residual,
                                    depthwise: depthwise))
            case .relu, .clip:
                guard case let .eltwise(alg, alpha, beta)? = activation(node.op) else { continue }
                layers.append(.eltwise(name: node.name, alg: alg, alpha: alpha, beta: beta, input: input, output: node.outputs[0]))
            case .add:
                if let c = g.initializers[node.inputs[1]], let rank = model.shapes[node.inputs[0]].map({ $0.count + 1 }) {
                    constants[node.inputs[1]] = Tensor(shape: Array(repeating: 1, count: rank - c.shape.count) + c.shape, data: c.data)
                }
                layers.append(.add(name: node.name, a: input, b: aliases[node.inputs[1]] ?? node.inputs[1], output: node.outputs[0]))
            case .globalAvgPool:
                layers.append(.pool(name: node.name, attrs: nil, input: input, output: node.outputs[0]))
            case .avgPool(let attrs):
                layers.append(.pool(name: node.name, attrs: attrs, input: input, output: node.outputs[0]))
            case .flatten, .reshape, .identity:
                aliases[node.outputs[0]] = input
            case .gemm(let a):
                var b = g.initializers[node.inputs[1]]!
                if !a.transB { b = b.transposed() }
                if a.alpha != 1 { b.data = b.data.map { $0 * a.alpha } }
                var bias: Tensor?
                if node.inputs.count > 2, var c = g.initializers[node.inputs[2]] {
                    if c.count == 1 { c = Tensor(shape: [b.shape[0]], data: Array(repeating: c.data[0], count: b.shape[0])) }
                    bias = Tensor(shape: [c.count], data: c.data.map { $0 * a.beta })
                }
                layers.append(.innerProduct(name: node.name, weight: b, bias: bias, input: input, output: node.outputs[0]))
            case .matMul:
                layers.append(.innerProduct(name: node.name, weight: g.initializers[node.inputs[1]]!.transposed(),
                                            bias: nil, input: input, output: node.outputs[0]))
            case .batchNorm, .softmax:
                throw InferenceError(source: model.source, node: node.name, op: node.op.name,
                                     reason: "not supported at this position by the runtime")
            }
        }
    }
}

extension Tensor {
    /// The transpose of a 2-D tensor.
    func transposed() -> Tensor {
        precondition(shape.count == 2)
        let (r, c) = (shape[0], shape[1])
        var out = [Float](repeating: 0, count: count)
        for i in 0..<r { for j in 0..<c { out[j * r + i] = data[i * c + j] } }
        return Tensor(shape: [c, r], data: out)
    }
}
