import TestSupport
import Foundation
@testable import Inference
import Testing

/// Hand-built graphs (the path a Keras importer takes) checked against a direct Swift computation.
@Suite struct GraphEngineTests {
    /// x → conv3x3 (pads 0/1, stride 2) + bias → ReLU6 → depthwise 3x3 → (+ residual via 1x1) → GAP → Gemm.
    func makeGraph() -> Graph {
        var rng = SplitMix(seed: 42)
        func tensor(_ shape: [Int], scale: Float) -> Tensor {
            Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in rng.uniform() * scale })
        }
        let inits: [String: Tensor] = [
            "w1": tensor([8, 3, 3, 3], scale: 0.5), "b1": tensor([8], scale: 0.1),
            "w2": tensor([8, 1, 3, 3], scale: 0.5),
            "w3": tensor([8, 8, 1, 1], scale: 0.5), "b3": tensor([8], scale: 0.1),
            "fc": tensor([5, 8], scale: 0.5), "fcb": tensor([5], scale: 0.1),
        ]
        let nodes = [
            Node(name: "c1", op: .conv(ConvAttributes(kernel: [3, 3], strides: [2, 2], padsBegin: [0, 0], padsEnd: [1, 1])),
                 inputs: ["x", "w1", "b1"], outputs: ["a1"]),
            Node(name: "r1", op: .clip(min: 0, max: 6), inputs: ["a1"], outputs: ["a2"]),
            Node(name: "dw", op: .conv(ConvAttributes(groups: 8, kernel: [3, 3], padsBegin: [1, 1], padsEnd: [1, 1])),
                 inputs: ["a2", "w2"], outputs: ["a3"]),
            Node(name: "r2", op: .relu, inputs: ["a3"], outputs: ["a4"]),
            Node(name: "pw", op: .conv(ConvAttributes(kernel: [1, 1])), inputs: ["a4", "w3", "b3"], outputs: ["a5"]),
            Node(name: "add", op: .add, inputs: ["a2", "a5"], outputs: ["a6"]),
            Node(name: "gap", op: .globalAvgPool, inputs: ["a6"], outputs: ["pooled"]),
            Node(name: "flat", op: .flatten(axis: 1), inputs: ["pooled"], outputs: ["flat"]),
            Node(name: "drop", op: .identity, inputs: ["flat"], outputs: ["flat2"]),
            Node(name: "fc", op: .gemm(GemmAttributes(transB: true)), inputs: ["flat2", "fc", "fcb"], outputs: ["logits"]),
        ]
        return Graph(inputs: [ValueInfo(name: "x", shape: [-1, 3, 9, 9])], outputs: [ValueInfo(name: "logits", shape: [])],
                     nodes: nodes, initializers: inits)
    }

    /// Direct NCHW reference for one image.
    func reference(_ g: Graph, _ x: [Float]) -> (pooled: [Float], logits: [Float]) {
        func conv(_ x: [Float], c: Int, h: Int, w: Int, _ wt: Tensor, _ b: Tensor?, groups: Int, stride: Int, pad: Int, padEnd: Int) -> ([Float], Int, Int) {
            let oc = wt.shape[0], k = wt.shape[2], icg = wt.shape[1]
            let oh = (h + pad + padEnd - k) / stride + 1, ow = (w + pad + padEnd - k) / stride + 1
            var y = [Float](repeating: 0, count: oc * oh * ow)
            for o in 0..<oc {
                let g = o / (oc / groups)
                for i in 0..<oh { for j in 0..<ow {
                    var s = b?.data[o] ?? 0
                    for ci in 0..<icg { for ki in 0..<k { for kj in 0..<k {
                        let yi = i * stride + ki - pad, xj = j * stride + kj - pad
                        guard yi >= 0, yi < h, xj >= 0, xj < w else { continue }
                        s += wt.data[((o * icg + ci) * k + ki) * k + kj] * x[((g * icg + ci) * h + yi) * w + xj]
                    } } }
                    y[(o * oh + i) * ow + j] = s
                } }
            }
            return (y, oh, ow)
        }
        let i = g.initializers
        var (a, h, w) = conv(x, c: 3, h: 9, w: 9, i["w1"]!, i["b1"]!, groups: 1, stride: 2, pad: 0, padEnd: 1)
        a = a.map { min(max($0, 0), 6) }
        var (d, _, _) = conv(a, c: 8, h: h, w: w, i["w2"]!, nil, groups: 8, stride: 1, pad: 1, padEnd: 1)
        d = d.map { max($0, 0) }
        let (p, _, _) = conv(d, c: 8, h: h, w: w, i["w3"]!, i["b3"]!, groups: 1, stride: 1, pad: 0, padEnd: 0)
        let sum = zip(a, p).map(+)
        let pooled = (0..<8).map { c in sum[c * h * w ..< (c + 1) * h * w].reduce(0, +) / Float(h * w) }
        let logits = (0..<5).map { o in (0..<8).reduce(i["fcb"]!.data[o]) { $0 + i["fc"]!.data[o * 8 + $1] * pooled[$1] } }
        return (pooled, logits)
    }

    @Test(arguments: [1, 2]) func matchesDirectComputation(threads: Int) throws {
        let graph = makeGraph()
        let model = try Model(graph: graph, source: "handmade")
        #expect(model.embeddingOutput == "pooled")
        #expect(model.embeddingDim == 8 && model.classCount == 5)
        #expect(!model.graph.nodes.contains { $0.op == .identity })
        let engine = try Engine(model: model, maxBatch: 4, threads: threads)
        var rng = SplitMix(seed: 7)
        let x = (0..<(3 * 3 * 9 * 9)).map { _ in rng.uniform() * 2 }
        var pooled = [Float](repeating: .nan, count: 3 * 8), logits = [Float](repeating: .nan, count: 3 * 5)
        try engine.run(input: x, count: 3, embeddings: &pooled, logits: &logits)
        for n in 0..<3 {
            let ref = reference(graph, Array(x[n * 243 ..< (n + 1) * 243]))
            for k in 0..<8 { #expect(abs(pooled[n * 8 + k] - ref.pooled[k]) < 1e-4, "image \(n) feature \(k)") }
            for k in 0..<5 { #expect(abs(logits[n * 5 + k] - ref.logits[k]) < 1e-4, "image \(n) logit \(k)") }
        }
        // The residual Add and both activations are fused into convolutions: c1, dw, pw, gap, fc.
        let layers = try engine.describe(batch: 3).filter { !$0.contains("reorder") }
        #expect(layers.count == 5, "\(layers)")
    }

    /// Two streams (each a single-threaded engine on its own thread, half the batch each) give the
    /// same results as one, for even and odd counts and a count of 1 (which one stream runs).
    @Test(arguments: [1, 2]) func streamsMatchDirectComputation(streams: Int) throws {
        let graph = makeGraph()
        let model = try Model(graph: graph, source: "handmade")
        let engine = try Engine(model: model, precision: .fp32, maxBatch: 5, threads: 2, streams: streams)
        #expect(engine.streams == streams)
        var rng = SplitMix(seed: 11)
        let x = (0..<(5 * 243)).map { _ in rng.uniform() * 2 }
        for count in [5, 4, 1] {
            var pooled = [Float](repeating: .nan, count: count * 8), logits = [Float](repeating: .nan, count: count * 5)
            try engine.run(input: x, count: count, embeddings: &pooled, logits: &logits)
            for n in 0..<count {
                let ref = reference(graph, Array(x[n * 243 ..< (n + 1) * 243]))
                for k in 0..<8 { #expect(abs(pooled[n * 8 + k] - ref.pooled[k]) < 1e-4, "count \(count) image \(n) feature \(k)") }
                for k in 0..<5 { #expect(abs(logits[n * 5 + k] - ref.logits[k]) < 1e-4, "count \(count) image \(n) logit \(k)") }
            }
        }
    }

    @Test func streamPolicy() {
        #expect(Engine.streams(threads: 2, maxBatch: 16, environment: [:]) == Engine.defaultStreams)
        #expect(Engine.streams(threads: 1, maxBatch: 16, environment: [:]) == 1)
        #expect(Engine.streams(threads: 2, maxBatch: 1, environment: [:]) == 1)
        #expect(Engine.streams(threads: 2, maxBatch: 16, environment: ["FRAMEPIPE_INFER_STREAMS": "1"]) == 1)
        #expect(Engine.streams(threads: 2, maxBatch: 16, environment: ["FRAMEPIPE_INFER_STREAMS": "2"]) == 2)
        #expect(Engine.streams(threads: 1, maxBatch: 16, environment: ["FRAMEPIPE_INFER_STREAMS": "2"]) == 1)
    }

    @Test func labels() {
        let logits: [Float] = [1, 3, 2, 3, -1]
        let p = logits.withUnsafeBufferPointer { Labels.softmax($0) }
        #expect(abs(p.reduce(0, +) - 1) < 1e-6)
        #expect(p[1] > p[2] && p[2] > p[0])
        let top = Labels.topK(p, k: 3)
        #expect(top.map(\.index) == [1, 3, 2])
        #expect(Labels.topK(p, k: 10).count == 5)
    }

    @Test func batchNormFoldsIntoConv() throws {
        let inits: [String: Tensor] = [
            "w": Tensor(shape: [2, 1, 1, 1], data: [1, 2]),
            "s": Tensor(shape: [2], data: [2, 1]), "b": Tensor(shape: [2], data: [0.5, 0]),
            "m": Tensor(shape: [2], data: [1, 0]), "v": Tensor(shape: [2], data: [4, 1]),
        ]
        let graph = Graph(inputs: [ValueInfo(name: "x", shape: [-1, 1, 1, 1])], outputs: [ValueInfo(name: "y", shape: [])],
                          nodes: [Node(name: "c", op: .conv(ConvAttributes(kernel: [1, 1])), inputs: ["x", "w"], outputs: ["t"]),
                                  Node(name: "bn", op: .batchNorm(epsilon: 0), inputs: ["t", "s", "b", "m", "v"], outputs: ["y"])],
                          initializers: inits)
        let model = try Model(graph: graph, source: "bn")
        #expect(model.graph.opCounts == ["Conv": 1])
        let engine = try Engine(model: model, maxBatch: 1)
        var y = [Float](repeating: 0, count: 2)
        try engine.run(input: [3], count: 1, embeddings: &y, logits: nil)
        // channel 0: (3*1 - 1) * 2/2 + 0.5 = 2.5; channel 1: (3*2 - 0) * 1/1 + 0 = 6
        #expect(abs(y[0] - 2.5) < 1e-5 && abs(y[1] - 6) < 1e-5, "\(y)")
    }
}


/// The thread setting reaches OpenMP (the runtime oneDNN uses in Debian's build).
@Suite struct ThreadTests {
    @Test func engineAppliesItsThreadCount() throws {
        let graph = Graph(inputs: [ValueInfo(name: "x", shape: [-1, 16, 4, 4])], outputs: [ValueInfo(name: "y", shape: [])],
                          nodes: [Node(name: "gap", op: .globalAvgPool, inputs: ["x"], outputs: ["y"])], initializers: [:])
        let model = try Model(graph: graph, source: "threads")
        let input = [Float](repeating: 1, count: 16 * 16)
        var out = [Float](repeating: 0, count: 16)
        for n in [1, 3, 2] {
            let engine = try Engine(model: model, maxBatch: 1, threads: n)
            try engine.run(input: input, count: 1, embeddings: &out, logits: nil)
            #expect(inferenceThreads() == n, "OpenMP max threads after an engine with threads \(n)")
            #expect(out.allSatisfy { $0 == 1 })
        }
    }
}

/// The CDNNL module links and reports the oneDNN the project is built against.
@Suite struct DNNLLinkTests {
    @Test func versionIsTwoSix() {
        #expect(Engine.oneDNNVersion.hasPrefix("2."), "\(Engine.oneDNNVersion)")
        #expect(!Engine.cpuISA.isEmpty)
    }

    /// A Keras-style head: Gemm straight after GlobalAveragePool (no Flatten).
    @Test func gemmReadsPooledInputFlattened() throws {
        let graph = Graph(inputs: [ValueInfo(name: "x", shape: [-1, 2, 2, 2])], outputs: [ValueInfo(name: "y", shape: [])],
                          nodes: [Node(name: "gap", op: .globalAvgPool, inputs: ["x"], outputs: ["p"]),
                                  Node(name: "dense", op: .gemm(GemmAttributes()), inputs: ["p", "k", "b"], outputs: ["y"])],
                          initializers: ["k": Tensor(shape: [2, 3], data: [1, 0, 2, 0, 1, 3]), "b": Tensor(shape: [3], data: [0, 0, 1])])
        let model = try Model(graph: graph, source: "keras-like")
        #expect(model.embeddingOutput == "p" && model.classCount == 3)
        let engine = try Engine(model: model, maxBatch: 1)
        var logits = [Float](repeating: 0, count: 3), pooled = [Float](repeating: 0, count: 2)
        try engine.run(input: [1, 1, 1, 1, 2, 2, 2, 2], count: 1, embeddings: &pooled, logits: &logits)
        #expect(pooled == [1, 2])
        #expect(logits == [1, 2, 9])   // [1, 2] x [[1, 0, 2], [0, 1, 3]] + [0, 0, 1]
    }
}
