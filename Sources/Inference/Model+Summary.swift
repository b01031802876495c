/// What `framepipe inspect` reports about a model.
extension Model {
    /// Multiply-accumulates per image (convolutions and fully connected layers).
    public var macsPerImage: Int {
        graph.nodes.reduce(0) { total, node in
            switch node.op {
            case .conv(let a):
                let w = graph.initializers[node.inputs[1]]!
                let out = shapes[node.outputs[0]]!.reduce(1, *)
                return total + out * w.shape[1] * a.kernel[0] * a.kernel[1]
            case .gemm, .matMul:
                return total + graph.initializers[node.inputs[1]]!.count
            default:
                return total
            }
        }
    }

    /// The input preprocessing this model most likely expects, by its layout (a guess for
    /// unknown models): 1001 classes is the TensorFlow-trained layout ([-1, 1]); 1000 classes is
    /// torchvision / the ONNX model zoo (ImageNet mean and std).
    public var expectedPreprocessing: String {
        switch classCount {
        case 1001: return "RGB, x / 127.5 - 1 (TensorFlow style, [-1, 1]); class 0 is background"
        case 1000: return "RGB, (x / 255 - mean) / std with mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225] (ImageNet / torchvision)"
        default: return "unknown (not an ImageNet layout)"
        }
    }
}

extension Model {
    /// How the runtime executes the graph after fusion, e.g.
    /// `"54 layers: 52 convolutions (35 activations and 10 residual adds fused), 1 pooling, 1 inner product"`.
    public var runtimeSummary: String {
        guard let lowered = try? LoweredGraph(model: self) else { return "not lowerable" }
        var convs = 0, acts = 0, sums = 0, pools = 0, fcs = 0, other = 0
        for layer in lowered.layers {
            switch layer {
            case let .conv(_, _, _, _, _, _, postOps, _, dw):
                convs += dw == nil ? 1 : 2
                acts += postOps.filter { $0 != .sum }.count + (dw?.postOps.count ?? 0)
                sums += postOps.filter { $0 == .sum }.count
            case .pool: pools += 1
            case .innerProduct: fcs += 1
            case .eltwise, .add: other += 1
            }
        }
        var parts = ["\(convs) convolutions (\(acts) activations and \(sums) residual adds fused)"]
        if pools > 0 { parts.append("\(pools) pooling") }
        if fcs > 0 { parts.append("\(fcs) inner product") }
        if other > 0 { parts.append("\(other) standalone eltwise/add") }
        let pairs = lowered.layers.filter { if case .conv(_, _, _, _, _, _, _, _, .some) = $0 { return true }; return false }.count
        if pairs > 0 { parts.append("\(pairs) 1x1 + depthwise pairs eligible for fusion") }
        return "\(lowered.layers.count) layers: " + parts.joined(separator: ", ")
    }
}
