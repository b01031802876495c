// The layer table: one mapping per Keras class name (https://keras.io/api/layers/). A class not in
// the table fails the import naming the layer. Options a mapping does not implement (e.g. a
// ReLU with negative_slope, channels_first) fail the same way rather than importing wrongly.
import Foundation
import Inference

/// What a layer mapping gets: the layer, its inputs and the importer to add nodes/initializers to.
struct LayerCall {
    let importer: KerasImporter
    let layer: KerasLayerConfig
    /// Which call of the layer (node index) this is.
    let node: Int
    let inputs: [KerasValue]
    /// Name prefix of the enclosing nested model ("" at top level, "mobilenetv2_1.00_160/" inside).
    let scope: String
    /// The H5 group holding this layer's weights.
    let weightGroup: String

    var config: JSONValue { layer.config }
    /// The layer's name in the graph ("outer/inner" inside a nested model; "_<n>" for later calls).
    var qualifiedName: String { scope + layer.name + (node > 0 ? "_\(node)" : "") }

    func fail(_ reason: String) -> KerasImportError {
        KerasImportError(path: importer.path, layer: scope + layer.name, layerClass: layer.className, reason: reason)
    }

    /// The single input of a one-input layer, refusing pending zero padding unless `allowPadded`.
    func singleInput(allowPadded: Bool = false) throws -> KerasValue {
        guard inputs.count == 1 else { throw fail("expected 1 input, got \(inputs.count)") }
        if inputs[0].isPadded && !allowPadded {
            throw fail("consumes a ZeroPadding2D output; only a convolution may (the graph has no pad op)")
        }
        return inputs[0]
    }

    /// A stored weight with its expected shape; marks it used.
    func weight(_ variable: String, shape: [Int]) throws -> Tensor {
        let variables = importer.weights.variables(group: weightGroup, layer: layer.name)
        guard let tensor = variables[variable] else {
            let present = variables.keys.sorted().joined(separator: ", ")
            throw fail("weight '\(variable)' is missing from the file (found: \(present.isEmpty ? "none" : present))")
        }
        guard tensor.shape == shape else { throw fail("weight '\(variable)' has shape \(tensor.shape), expected \(shape)") }
        importer.weights.markUsed(group: weightGroup, layer: layer.name, variable: variable)
        return tensor
    }

    func string(_ key: String, default value: String) -> String { config[key]?.string ?? value }
    func bool(_ key: String, default value: Bool) -> Bool { config[key]?.bool ?? value }
    func double(_ key: String, default value: Double) throws -> Double {
        guard let item = config[key], !item.isNull else { return value }
        guard let number = item.double else { throw fail("option \(key) is not a number") }
        return number
    }

    /// An `(h, w)` option given as an int or a pair (kernel_size, strides, dilation_rate).
    func pair(_ key: String, default value: [Int]? = nil) throws -> [Int] {
        if let number = config[key]?.int { return [number, number] }
        if let items = config[key]?.array, items.count == 2, let h = items[0].int, let w = items[1].int { return [h, w] }
        if let value, config[key] == nil || config[key]!.isNull { return value }
        throw fail("option \(key) is not an int or a pair of ints")
    }

    /// Rejects anything but channels_last.
    func requireChannelsLast() throws {
        let format = string("data_format", default: "channels_last")
        guard format == "channels_last" else { throw fail("data_format \(format) is not supported (channels_last only)") }
    }

    /// The `activation` option as a name (Keras 3 may serialize it as an object).
    var activationName: String {
        if let name = config["activation"]?.string { return name }
        if let object = config["activation"], let name = object["config"]?.string ?? object["class_name"]?.string {
            return name
        }
        return "linear"
    }
}

extension KerasImporter {
    typealias LayerMapping = (LayerCall) throws -> [KerasValue]

    /// Keras class name → mapping. Nested models are handled before the table.
    static let layerTable: [String: LayerMapping] = [
        "Conv2D": { try [mapConv2D($0)] },
        "DepthwiseConv2D": { try [mapDepthwiseConv2D($0)] },
        "BatchNormalization": { try [mapBatchNormalization($0)] },
        "ReLU": { try [mapReLU($0)] },
        "Activation": { call in
            let input = try call.singleInput()
            return [try applyActivation(call.string("activation", default: "linear"), to: input, call: call,
                                        outputName: call.qualifiedName)]
        },
        "Softmax": { call in
            let input = try call.singleInput()
            let axis = try call.double("axis", default: -1)
            guard axis == -1 || (input.shape.count == 1 && axis == 1) else { throw call.fail("softmax over axis \(Int(axis)) is not supported") }
            return [try applyActivation("softmax", to: input, call: call, outputName: call.qualifiedName)]
        },
        "ZeroPadding2D": { try [mapZeroPadding2D($0)] },
        "Add": { try [mapAdd($0)] },
        "GlobalAveragePooling2D": { try [mapGlobalAveragePooling2D($0)] },
        "Dropout": { call in [try call.singleInput(allowPadded: true)] },  // identity at inference
        "Flatten": { try [mapFlatten($0)] },
        "Dense": { try [mapDense($0)] },
        "Rescaling": { try [mapRescaling($0)] },
        "Normalization": { try [mapNormalization($0)] },
    ]

    /// Maps one call of a layer to graph nodes and returns its output values.
    func applyLayer(_ layer: KerasLayerConfig, node: Int, inputs: [KerasValue], scope: String,
                    weightGroup: String?) throws -> [KerasValue] {
        if KerasModelConfig.modelClassNames.contains(layer.className) {
            let nested: KerasModelConfig
            do {
                nested = try KerasModelConfig(.object(["class_name": .string(layer.className), "config": layer.config]))
            } catch let error as ConfigError {
                throw KerasImportError(path: path, layer: scope + layer.name, layerClass: layer.className,
                                       reason: error.description)
            }
            let nestedScope = scope + layer.name + (node > 0 ? "_\(node)" : "") + "/"
            return try importModel(nested, inputs: inputs, scope: nestedScope, weightGroup: weightGroup ?? layer.name)
        }
        guard let mapping = KerasImporter.layerTable[layer.className] else {
            throw KerasImportError(path: path, layer: scope + layer.name, layerClass: layer.className,
                                   reason: "unsupported layer type \(layer.className) (supported: "
                                       + KerasImporter.layerTable.keys.sorted().joined(separator: ", ")
                                       + ", InputLayer, Functional, Sequential)")
        }
        let call = LayerCall(importer: self, layer: layer, node: node, inputs: inputs, scope: scope,
                             weightGroup: weightGroup ?? layer.name)
        return try mapping(call)
    }

    // MARK: - Convolutions

    /// TF/Keras padding for one spatial dimension of size `size` (already including any pending
    /// ZeroPadding2D): "valid" → none; "same" → TF SAME, the odd pixel after.
    static func kerasPadding(_ mode: String, size: Int, kernel: Int, stride: Int, dilation: Int) -> (begin: Int, end: Int)? {
        switch mode {
        case "valid": return (0, 0)
        case "same":
            let effective = (kernel - 1) * dilation + 1
            let out = (size + stride - 1) / stride
            let total = max((out - 1) * stride + effective - size, 0)
            return (total / 2, total - total / 2)
        default: return nil
        }
    }

    /// Adds a convolution node with explicit pads; `weight` is already OIHW.
    private static func addConv(_ call: LayerCall, input: KerasValue, weight: Tensor, bias: Tensor?, groups: Int,
                                kernel: [Int], outChannels: Int) throws -> KerasValue {
        try call.requireChannelsLast()
        let strides = try call.pair("strides", default: [1, 1])
        let dilations = try call.pair("dilation_rate", default: [1, 1])
        guard strides.allSatisfy({ $0 >= 1 }), dilations.allSatisfy({ $0 >= 1 }) else { throw call.fail("invalid strides or dilation") }
        let mode = call.string("padding", default: "valid")
        var padsBegin = input.padsBegin, padsEnd = input.padsEnd
        var outSize: [Int] = []
        for axis in 0..<2 {
            let size = input.shape[1 + axis] + padsBegin[axis] + padsEnd[axis]
            guard let pads = kerasPadding(mode, size: size, kernel: kernel[axis], stride: strides[axis],
                                         dilation: dilations[axis]) else {
                throw call.fail("padding '\(mode)' is not supported (same or valid)")
            }
            padsBegin[axis] += pads.begin
            padsEnd[axis] += pads.end
            let span = size + pads.begin + pads.end - ((kernel[axis] - 1) * dilations[axis] + 1)
            guard span >= 0 else { throw call.fail("kernel \(kernel) is larger than its input \(input.shape)") }
            outSize.append(span / strides[axis] + 1)
        }
        let name = call.qualifiedName
        var inputs = [input.name, call.importer.addInitializer(name + "/kernel", weight)]
        if let bias { inputs.append(call.importer.addInitializer(name + "/bias", bias)) }
        let attributes = ConvAttributes(groups: groups, kernel: kernel, strides: strides, dilations: dilations,
                                        padsBegin: padsBegin, padsEnd: padsEnd)
        let hasActivation = call.activationName != "linear"
        let output = call.importer.addNode(name, .conv(attributes), inputs: inputs,
                                           output: hasActivation ? name + "/linear" : name)
        let value = KerasValue(name: output, shape: [outChannels] + outSize)
        return try applyActivation(call.activationName, to: value, call: call, outputName: name)
    }

    private static func mapConv2D(_ call: LayerCall) throws -> KerasValue {
        let input = try call.singleInput(allowPadded: true)
        guard input.shape.count == 3 else { throw call.fail("expects a feature map, got shape \(input.shape)") }
        let kernel = try call.pair("kernel_size")
        guard let filters = call.config["filters"]?.int, filters > 0 else { throw call.fail("no filters option") }
        let groups = call.config["groups"]?.int ?? 1
        let inChannels = input.shape[0]
        guard groups >= 1, inChannels % groups == 0, filters % groups == 0 else {
            throw call.fail("groups \(groups) does not divide \(inChannels) input / \(filters) output channels")
        }
        let hwio = try call.weight("kernel", shape: [kernel[0], kernel[1], inChannels / groups, filters])
        let bias = call.bool("use_bias", default: true) ? try call.weight("bias", shape: [filters]) : nil
        return try addConv(call, input: input, weight: hwioToOIHW(hwio), bias: bias, groups: groups,
                           kernel: kernel, outChannels: filters)
    }

    private static func mapDepthwiseConv2D(_ call: LayerCall) throws -> KerasValue {
        let input = try call.singleInput(allowPadded: true)
        guard input.shape.count == 3 else { throw call.fail("expects a feature map, got shape \(input.shape)") }
        let kernel = try call.pair("kernel_size")
        let multiplier = call.config["depth_multiplier"]?.int ?? 1
        let channels = input.shape[0]
        let variables = call.importer.weights.variables(group: call.weightGroup, layer: call.layer.name)
        let variable = variables["depthwise_kernel"] != nil ? "depthwise_kernel" : "kernel"  // Keras 2 : Keras 3
        let hwcm = try call.weight(variable, shape: [kernel[0], kernel[1], channels, multiplier])
        let bias = call.bool("use_bias", default: true) ? try call.weight("bias", shape: [channels * multiplier]) : nil
        return try addConv(call, input: input, weight: depthwiseToOIHW(hwcm), bias: bias, groups: channels,
                           kernel: kernel, outChannels: channels * multiplier)
    }

    /// HWIO `[kH, kW, I, O]` → OIHW `[O, I, kH, kW]`.
    static func hwioToOIHW(_ tensor: Tensor) -> Tensor {
        let (kh, kw, ci, co) = (tensor.shape[0], tensor.shape[1], tensor.shape[2], tensor.shape[3])
        var out = [Float](repeating: 0, count: tensor.count)
        tensor.data.withUnsafeBufferPointer { src in
            for y in 0..<kh { for x in 0..<kw { for i in 0..<ci { for o in 0..<co {
                out[((o * ci + i) * kh + y) * kw + x] = src[((y * kw + x) * ci + i) * co + o]
            } } } }
        }
        return Tensor(shape: [co, ci, kh, kw], data: out)
    }

    /// Depthwise `[kH, kW, C, M]` → OIHW `[C * M, 1, kH, kW]` (output channel `c * M + m`, as TF).
    static func depthwiseToOIHW(_ tensor: Tensor) -> Tensor {
        let (kh, kw, channels, multiplier) = (tensor.shape[0], tensor.shape[1], tensor.shape[2], tensor.shape[3])
        var out = [Float](repeating: 0, count: tensor.count)
        tensor.data.withUnsafeBufferPointer { src in
            for y in 0..<kh { for x in 0..<kw { for c in 0..<channels { for m in 0..<multiplier {
                out[((c * multiplier + m) * kh + y) * kw + x] = src[((y * kw + x) * channels + c) * multiplier + m]
            } } } }
        }
        return Tensor(shape: [channels * multiplier, 1, kh, kw], data: out)
    }

    // MARK: - Normalisation and activations

    private static func mapBatchNormalization(_ call: LayerCall) throws -> KerasValue {
        let input = try call.singleInput()
        let axis = call.config["axis"]?.int ?? call.config["axis"]?.array?.first?.int ?? -1
        let channelAxis = input.shape.count  // NHWC rank - 1
        guard axis == -1 || axis == channelAxis else { throw call.fail("normalising over axis \(axis) is not supported (channels only)") }
        let channels = input.shape[0]
        let scale = call.bool("scale", default: true) ? try call.weight("gamma", shape: [channels])
            : Tensor(shape: [channels], data: [Float](repeating: 1, count: channels))
        let bias = call.bool("center", default: true) ? try call.weight("beta", shape: [channels])
            : Tensor(shape: [channels], data: [Float](repeating: 0, count: channels))
        let mean = try call.weight("moving_mean", shape: [channels])
        let variance = try call.weight("moving_variance", shape: [channels])
        let name = call.qualifiedName
        let importer = call.importer
        let inputs = [input.name,
                      importer.addInitializer(name + "/gamma", scale), importer.addInitializer(name + "/beta", bias),
                      importer.addInitializer(name + "/moving_mean", mean),
                      importer.addInitializer(name + "/moving_variance", variance)]
        let epsilon = Float(try call.double("epsilon", default: 0.001))
        return KerasValue(name: importer.addNode(name, .batchNorm(epsilon: epsilon), inputs: inputs), shape: input.shape)
    }

    private static func mapReLU(_ call: LayerCall) throws -> KerasValue {
        let input = try call.singleInput()
        let slope = try call.double("negative_slope", default: 0)
        let threshold = try call.double("threshold", default: 0)
        guard slope == 0, threshold == 0 else { throw call.fail("negative_slope and threshold must be 0") }
        let name = call.qualifiedName
        if let maxValue = call.config["max_value"], !maxValue.isNull {
            guard let bound = maxValue.double, bound > 0 else { throw call.fail("max_value is not a positive number") }
            return KerasValue(name: call.importer.addNode(name, .clip(min: 0, max: Float(bound)), inputs: [input.name]),
                              shape: input.shape)
        }
        return KerasValue(name: call.importer.addNode(name, .relu, inputs: [input.name]), shape: input.shape)
    }

    /// Applies a Keras activation by name (Activation layer or a layer's `activation` option).
    static func applyActivation(_ activation: String, to input: KerasValue, call: LayerCall,
                                outputName: String) throws -> KerasValue {
        let op: Op
        switch activation {
        case "linear": return input
        case "relu": op = .relu
        case "relu6": op = .clip(min: 0, max: 6)
        case "softmax":
            guard input.shape.count == 1 else { throw call.fail("softmax over a feature map is not supported") }
            op = .softmax(axis: 1)
        default: throw call.fail("activation '\(activation)' is not supported (linear, relu, relu6, softmax)")
        }
        return KerasValue(name: call.importer.addNode(outputName, op, inputs: [input.name], output: outputName),
                          shape: input.shape)
    }

    // MARK: - Structure

    private static func mapZeroPadding2D(_ call: LayerCall) throws -> KerasValue {
        var input = try call.singleInput(allowPadded: true)
        try call.requireChannelsLast()
        guard input.shape.count == 3 else { throw call.fail("expects a feature map, got shape \(input.shape)") }
        let pads: [[Int]]
        if let value = call.config["padding"]?.int {
            pads = [[value, value], [value, value]]
        } else if let items = call.config["padding"]?.array, items.count == 2 {
            pads = try items.map { item in
                if let value = item.int { return [value, value] }
                guard let pair = item.array, pair.count == 2, let a = pair[0].int, let b = pair[1].int else {
                    throw call.fail("malformed padding option")
                }
                return [a, b]
            }
        } else {
            throw call.fail("malformed padding option")
        }
        guard pads.joined().allSatisfy({ $0 >= 0 }) else { throw call.fail("negative padding") }
        input.padsBegin = [input.padsBegin[0] + pads[0][0], input.padsBegin[1] + pads[1][0]]
        input.padsEnd = [input.padsEnd[0] + pads[0][1], input.padsEnd[1] + pads[1][1]]
        return input
    }

    private static func mapAdd(_ call: LayerCall) throws -> KerasValue {
        guard call.inputs.count >= 2 else { throw call.fail("expected at least 2 inputs, got \(call.inputs.count)") }
        if call.inputs.contains(where: \.isPadded) { throw call.fail("consumes a ZeroPadding2D output") }
        let shape = call.inputs[0].shape
        guard call.inputs.allSatisfy({ $0.shape == shape }) else {
            throw call.fail("inputs have different shapes \(call.inputs.map(\.shape)) (broadcasting is not supported)")
        }
        var sum = call.inputs[0].name
        for (index, input) in call.inputs.dropFirst().enumerated() {
            let last = index == call.inputs.count - 2
            sum = call.importer.addNode(call.qualifiedName, .add, inputs: [sum, input.name],
                                        output: last ? call.qualifiedName : call.qualifiedName + "/partial")
        }
        return KerasValue(name: sum, shape: shape)
    }

    private static func mapGlobalAveragePooling2D(_ call: LayerCall) throws -> KerasValue {
        let input = try call.singleInput()
        try call.requireChannelsLast()
        guard input.shape.count == 3 else { throw call.fail("expects a feature map, got shape \(input.shape)") }
        let name = call.qualifiedName
        if call.bool("keepdims", default: false) {
            return KerasValue(name: call.importer.addNode(name, .globalAvgPool, inputs: [input.name]),
                              shape: [input.shape[0], 1, 1])
        }
        // The pooled value keeps the layer's name: it is the embedding output the sidecar names.
        let pooled = call.importer.addNode(name, .globalAvgPool, inputs: [input.name], output: name)
        return KerasValue(name: call.importer.addNode(name, .flatten(axis: 1), inputs: [pooled], output: name + "/flat"),
                          shape: [input.shape[0]])
    }

    private static func mapFlatten(_ call: LayerCall) throws -> KerasValue {
        let input = try call.singleInput()
        if input.shape.count == 1 { return input }
        // Keras flattens NHWC (H, W, C order); the IR flattens NCHW. They agree only for 1x1 maps.
        guard input.shape.count == 3, input.shape[1] == 1, input.shape[2] == 1 else {
            throw call.fail("flattening a \(input.shape[1])x\(input.shape[2]) feature map is not supported (1x1 only)")
        }
        return KerasValue(name: call.importer.addNode(call.qualifiedName, .flatten(axis: 1), inputs: [input.name]),
                          shape: [input.shape[0]])
    }

    private static func mapDense(_ call: LayerCall) throws -> KerasValue {
        let input = try call.singleInput()
        guard input.shape.count == 1 else { throw call.fail("expects a vector input, got shape \(input.shape)") }
        guard let units = call.config["units"]?.int, units > 0 else { throw call.fail("no units option") }
        let name = call.qualifiedName
        let kernel = try call.weight("kernel", shape: [input.shape[0], units])  // [K, N]: transB = false
        var inputs = [input.name, call.importer.addInitializer(name + "/kernel", kernel)]
        if call.bool("use_bias", default: true) {
            inputs.append(call.importer.addInitializer(name + "/bias", try call.weight("bias", shape: [units])))
        }
        let hasActivation = call.activationName != "linear"
        let output = call.importer.addNode(name, .gemm(GemmAttributes()), inputs: inputs,
                                           output: hasActivation ? name + "/linear" : name)
        return try applyActivation(call.activationName, to: KerasValue(name: output, shape: [units]), call: call,
                                   outputName: name)
    }

    // MARK: - Preprocessing layers, as a per-channel affine map (a 1x1 depthwise convolution)

    /// `y = x * scale + offset` per channel, as a 1x1 depthwise convolution (exact, and shared by
    /// every runtime path; the IR has no elementwise multiply).
    private static func addAffine(_ call: LayerCall, input: KerasValue, scale: [Float], offset: [Float]) throws -> KerasValue {
        guard input.shape.count == 3 else { throw call.fail("expects a feature map, got shape \(input.shape)") }
        let channels = input.shape[0]
        let name = call.qualifiedName
        let weight = call.importer.addInitializer(name + "/scale", Tensor(shape: [channels, 1, 1, 1], data: scale))
        let bias = call.importer.addInitializer(name + "/offset", Tensor(shape: [channels], data: offset))
        let output = call.importer.addNode(name, .conv(ConvAttributes(groups: channels, kernel: [1, 1])),
                                           inputs: [input.name, weight, bias])
        return KerasValue(name: output, shape: input.shape)
    }

    /// A number or a per-channel list option, broadcast to `channels` values.
    private static func perChannel(_ call: LayerCall, _ key: String, channels: Int, default value: Double) throws -> [Float] {
        guard let item = call.config[key], !item.isNull else { return [Float](repeating: Float(value), count: channels) }
        if let number = item.double { return [Float](repeating: Float(number), count: channels) }
        let numbers = (item.array ?? []).compactMap(\.double)
        if numbers.count == 1 { return [Float](repeating: Float(numbers[0]), count: channels) }
        guard numbers.count == channels else { throw call.fail("option \(key) has \(numbers.count) values for \(channels) channels") }
        return numbers.map(Float.init)
    }

    private static func mapRescaling(_ call: LayerCall) throws -> KerasValue {
        let input = try call.singleInput()
        let channels = input.shape[0]
        return try addAffine(call, input: input, scale: perChannel(call, "scale", channels: channels, default: 1),
                             offset: perChannel(call, "offset", channels: channels, default: 0))
    }

    /// Keras 3 Normalization: `(x - mean) / max(sqrt(variance), 1e-7)`; mean and variance come from
    /// the config when given there, else from the stored weights (`adapt`).
    private static func mapNormalization(_ call: LayerCall) throws -> KerasValue {
        let input = try call.singleInput()
        let channels = input.shape[0]
        if call.bool("invert", default: false) { throw call.fail("invert=True is not supported") }
        let mean: [Float], variance: [Float]
        if let value = call.config["mean"], !value.isNull {
            mean = try perChannel(call, "mean", channels: channels, default: 0)
            variance = try perChannel(call, "variance", channels: channels, default: 1)
        } else {
            let stored = call.importer.weights.variables(group: call.weightGroup, layer: call.layer.name)
            guard let meanTensor = stored["mean"], let varianceTensor = stored["variance"],
                  meanTensor.count == channels, varianceTensor.count == channels else {
                throw call.fail("no per-channel mean/variance in the config or the weights")
            }
            mean = try call.weight("mean", shape: meanTensor.shape).data
            variance = try call.weight("variance", shape: varianceTensor.shape).data
            if stored["count"] != nil { _ = try call.weight("count", shape: stored["count"]!.shape) }
        }
        let scale = variance.map { 1 / max($0.squareRoot(), 1e-7) }
        let offset = zip(mean, scale).map { -$0 * $1 }
        return try addAffine(call, input: input, scale: scale, offset: offset)
    }
}
