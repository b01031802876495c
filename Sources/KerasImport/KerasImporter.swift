// Keras H5 → graph IR (Inference.Graph): walks the functional / sequential model described by the
// `model_config` attribute (nested models included), maps each layer call through the table in
// KerasImporter+Layers.swift, and checks that every stored weight was used.
//
// Specs followed:
//   - Keras layer docs, https://keras.io/api/layers/ (Conv2D, DepthwiseConv2D, BatchNormalization,
//     ReLU, Activation, ZeroPadding2D, Add, GlobalAveragePooling2D, Dropout, Dense, Flatten,
//     Rescaling, Normalization, InputLayer) and the Keras serialization format (KerasConfig.swift);
//   - TensorFlow's "SAME" padding (https://www.tensorflow.org/api_docs/python/tf/nn#notes_on_padding_2):
//     total = max((ceil(in / s) - 1) * s + (k - 1) * d + 1 - in, 0), the extra pixel at bottom/right;
//   - HDF5 File Format Specification 3.0, "Level 0A - Format Signature and Superblock"
//     (https://support.hdfgroup.org/archive/support/HDF5/doc/H5.format.html): the signature
//     `\x89HDF\r\n\x1a\n` at offset 0 or 512 * 2^n (KerasModel.isHDF5); everything else is read
//     through libhdf5's C API (HDF5.swift) following Keras' legacy H5 layout (KerasWeights.swift).
//
// Layouts: Keras activations are NHWC, the IR's are NCHW with a dynamic batch; Keras kernels are
// HWIO (depthwise: H, W, C, multiplier), the IR's OIHW. Shapes tracked here omit the batch: [C, H, W]
// for feature maps, [C] for vectors.
import Foundation
import Inference

/// A value of the graph being built: its IR name, its shape without the batch dimension and any
/// zero padding (ZeroPadding2D) waiting to be folded into the convolution that consumes it.
struct KerasValue {
    var name: String
    var shape: [Int]
    /// Pending padding `[top, left]` / `[bottom, right]`; the IR has no pad op, so only a
    /// convolution may consume a padded value.
    var padsBegin: [Int] = [0, 0]
    var padsEnd: [Int] = [0, 0]
    var isPadded: Bool { padsBegin != [0, 0] || padsEnd != [0, 0] }
}

/// Builds one `Graph` from one Keras H5 file.
final class KerasImporter {
    let path: String
    let weights: KerasWeights
    private(set) var nodes: [Node] = []
    private(set) var initializers: [String: Tensor] = [:]
    private(set) var graphInputs: [ValueInfo] = []
    private var valueNames = Set<String>()

    init(path: String, weights: KerasWeights) {
        self.path = path
        self.weights = weights
    }

    /// Imports the top-level model and returns the finished graph.
    func importGraph(_ model: KerasModelConfig) throws -> Graph {
        var outputs = try importModel(model, inputs: nil, scope: "", weightGroup: nil)
        guard !graphInputs.isEmpty else { throw KerasImportError(path: path, reason: "the model has no InputLayer") }

        // A final softmax is left to the caller (framepipe reports raw logits and applies softmax
        // itself, like the ONNX models): the output is the softmax's input, under the softmax's name.
        for index in outputs.indices {
            outputs[index] = stripFinalSoftmax(outputs[index])
        }
        for output in outputs where output.isPadded {
            throw KerasImportError(path: path, reason: "model output '\(output.name)' is a ZeroPadding2D result")
        }
        let outputInfos = outputs.map { ValueInfo(name: $0.name, shape: [-1] + $0.shape) }

        let unused = weights.unused
        if !unused.isEmpty {
            let shown = unused.prefix(5).joined(separator: ", ") + (unused.count > 5 ? ", ..." : "")
            throw KerasImportError(path: path, reason: "\(unused.count) stored weight(s) belong to no mapped layer: \(shown)")
        }
        return Graph(inputs: graphInputs, outputs: outputInfos, nodes: nodes, initializers: initializers)
    }

    // MARK: - Models

    /// Imports a functional or sequential model. `inputs` is nil for the top-level model (its
    /// InputLayers become graph inputs) and the caller's values for a nested model.
    /// `weightGroup` is the top-level H5 group holding the weights of layers inside a nested model.
    func importModel(_ model: KerasModelConfig, inputs: [KerasValue]?, scope: String,
                     weightGroup: String?) throws -> [KerasValue] {
        if model.isSequential {
            return [try importSequential(model, input: inputs, scope: scope, weightGroup: weightGroup)]
        }
        if let inputs, inputs.count != model.inputs.count {
            throw KerasImportError(path: path, layer: scope + model.name, layerClass: model.className,
                                   reason: "called with \(inputs.count) inputs, model takes \(model.inputs.count)")
        }
        var values: [KerasTensorRef: KerasValue] = [:]
        var pending: [(layer: KerasLayerConfig, node: Int)] = []
        for layer in model.layers {
            if layer.className == "InputLayer" {
                let ref = KerasTensorRef(layer: layer.name, node: 0, tensor: 0)
                if let inputs {
                    guard let index = model.inputs.firstIndex(of: ref) else { continue }
                    values[ref] = inputs[index]
                } else {
                    values[ref] = try makeGraphInput(layer, scope: scope)
                }
                continue
            }
            if layer.inboundNodes.isEmpty {
                throw KerasImportError(path: path, layer: scope + layer.name, layerClass: layer.className,
                                       reason: "the layer is not connected to anything")
            }
            for node in layer.inboundNodes.indices { pending.append((layer, node)) }
        }

        // Layer calls in dependency order (config order almost always is; shared layers may not be).
        while !pending.isEmpty {
            var progressed = false
            var remaining: [(layer: KerasLayerConfig, node: Int)] = []
            for call in pending {
                let refs = call.layer.inboundNodes[call.node]
                guard refs.allSatisfy({ values[$0] != nil }) else { remaining.append(call); continue }
                let results = try applyLayer(call.layer, node: call.node, inputs: refs.map { values[$0]! },
                                             scope: scope, weightGroup: weightGroup)
                for (index, value) in results.enumerated() {
                    values[KerasTensorRef(layer: call.layer.name, node: call.node, tensor: index)] = value
                }
                progressed = true
            }
            if !progressed {
                let call = remaining[0]
                let missing = call.layer.inboundNodes[call.node].first { values[$0] == nil }!
                throw KerasImportError(path: path, layer: scope + call.layer.name, layerClass: call.layer.className,
                                       reason: "its input \(missing) is never produced")
            }
            pending = remaining
        }
        return try model.outputs.map { ref in
            guard let value = values[ref] else {
                throw KerasImportError(path: path, reason: "model '\(model.name)' output \(ref) is never produced")
            }
            return value
        }
    }

    private func importSequential(_ model: KerasModelConfig, input: [KerasValue]?, scope: String,
                                  weightGroup: String?) throws -> KerasValue {
        var layers = model.layers[...]
        var current: KerasValue
        if let input {
            guard input.count == 1 else {
                throw KerasImportError(path: path, layer: scope + model.name, layerClass: model.className,
                                       reason: "a Sequential model takes one input, got \(input.count)")
            }
            current = input[0]
            if layers.first?.className == "InputLayer" { layers = layers.dropFirst() }
        } else {
            guard let first = layers.first else {
                throw KerasImportError(path: path, reason: "model '\(model.name)' has no layers")
            }
            current = try makeGraphInput(first, scope: scope)
            if first.className == "InputLayer" { layers = layers.dropFirst() }
        }
        for layer in layers {
            current = try applyLayer(layer, node: 0, inputs: [current], scope: scope, weightGroup: weightGroup)[0]
        }
        return current
    }

    /// A graph input `[-1, C, H, W]` from an InputLayer's `batch_shape` (Keras 3) or
    /// `batch_input_shape` (Keras 2; also on the first layer of a Keras 2 Sequential model).
    private func makeGraphInput(_ layer: KerasLayerConfig, scope: String) throws -> KerasValue {
        let fail = { (reason: String) in
            KerasImportError(path: self.path, layer: scope + layer.name, layerClass: layer.className, reason: reason)
        }
        guard let dims = (layer.config["batch_shape"] ?? layer.config["batch_input_shape"])?.array else {
            throw fail("no input shape (batch_shape) in the config")
        }
        let shape = dims.dropFirst().map { $0.int }
        guard shape.count == 3, let height = shape[0], let width = shape[1], let channels = shape[2],
              height > 0, width > 0, channels > 0 else {
            throw fail("input shape \(dims.dropFirst().map { $0.int.map(String.init) ?? "None" }) is not a fixed [H, W, C] image")
        }
        if let format = layer.config["data_format"]?.string, format != "channels_last" {
            throw fail("data_format \(format) is not supported (channels_last only)")
        }
        // A Keras 2 Sequential model declares its input on its first real layer: call the input "input".
        let name = uniqueValueName(scope + (layer.className == "InputLayer" ? layer.name : "input"))
        graphInputs.append(ValueInfo(name: name, shape: [-1, channels, height, width]))
        return KerasValue(name: name, shape: [channels, height, width])
    }

    // MARK: - Helpers used by the layer table

    /// A value name not used yet in the graph (`base`, else `base_1`, ...).
    func uniqueValueName(_ base: String) -> String {
        var name = base
        var suffix = 1
        while valueNames.contains(name) || initializers[name] != nil {
            name = "\(base)_\(suffix)"
            suffix += 1
        }
        valueNames.insert(name)
        return name
    }

    /// Appends a node producing one new value named after `name`; returns the value's name.
    func addNode(_ name: String, _ op: Op, inputs: [String], output: String? = nil) -> String {
        let outputName = uniqueValueName(output ?? name)
        nodes.append(Node(name: name, op: op, inputs: inputs, outputs: [outputName]))
        return outputName
    }

    /// Registers a constant tensor (reused when a shared layer is called again) and returns its name.
    func addInitializer(_ name: String, _ tensor: Tensor) -> String {
        if initializers[name] == nil { initializers[name] = tensor }
        return name
    }

    /// Removes a softmax that produces `value` when nothing else consumes it; the producer of the
    /// softmax's input takes over the output name.
    private func stripFinalSoftmax(_ value: KerasValue) -> KerasValue {
        guard let index = nodes.lastIndex(where: { $0.outputs == [value.name] }),
              case .softmax = nodes[index].op else { return value }
        let input = nodes[index].inputs[0]
        let consumers = nodes.filter { $0.inputs.contains(input) }.count
        guard consumers == 1, let producer = nodes.lastIndex(where: { $0.outputs == [input] }) else { return value }
        nodes.remove(at: index)
        nodes[producer].outputs = [value.name]
        valueNames.remove(input)
        return value
    }
}
