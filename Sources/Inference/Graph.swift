// The model graph IR shared by every importer (ONNX in this module, Keras H5 in KerasImport).
//
// Importers translate their file format into a `Graph`; `Model(graph:source:)` then verifies it,
// runs the optimisation passes (batch-norm folding, identity removal, activation and residual
// fusion) and the oneDNN runtime compiles it. The IR is deliberately small: float32 only,
// activations in NCHW with a dynamic batch dimension, weights in ONNX layouts.

/// A constant float32 tensor (weights, biases, batch-norm statistics) stored row-major.
///
/// Layouts follow ONNX: convolution weights are OIHW (`[outChannels, inChannels / groups, kH, kW]`),
/// a Gemm weight is `[K, N]` (or `[N, K]` with `transB`), vectors are `[C]`.
public struct Tensor: Sendable, Equatable {
    /// Dimensions, outermost first; `[]` is a scalar.
    public var shape: [Int]
    /// `shape.reduce(1, *)` values in row-major order.
    public var data: [Float]

    /// Creates a tensor; `data.count` must equal the product of `shape`.
    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count,
                     "tensor shape \(shape) needs \(shape.reduce(1, *)) values, got \(data.count)")
        self.shape = shape
        self.data = data
    }

    /// Number of elements.
    public var count: Int { data.count }
}

/// A graph input or output: a name and its shape with the batch dimension as `-1`.
public struct ValueInfo: Sendable, Equatable {
    /// The value's name, unique in the graph.
    public var name: String
    /// Shape with `-1` for the (dynamic) batch dimension, e.g. `[-1, 3, 224, 224]` or `[-1, 1000]`.
    public var shape: [Int]

    /// Creates a value description.
    public init(name: String, shape: [Int]) {
        self.name = name
        self.shape = shape
    }
}

/// 2-D convolution attributes (ONNX `Conv`, Keras `Conv2D` / `DepthwiseConv2D`).
///
/// Inputs of the node: `[x, weight]` or `[x, weight, bias]`; weight is an initializer in OIHW.
/// Pads are explicit (importers resolve `auto_pad` / Keras `"same"`), and may be asymmetric.
public struct ConvAttributes: Sendable, Equatable {
    /// Number of groups; `groups == inChannels == outChannels` is a depthwise convolution.
    public var groups: Int
    /// Kernel size `[kH, kW]` (must match the weight's last two dimensions).
    public var kernel: [Int]
    /// Strides `[sH, sW]`.
    public var strides: [Int]
    /// Dilations `[dH, dW]`; `[1, 1]` is an ordinary convolution.
    public var dilations: [Int]
    /// Padding before the data: `[top, left]`.
    public var padsBegin: [Int]
    /// Padding after the data: `[bottom, right]`.
    public var padsEnd: [Int]

    /// Creates convolution attributes; defaults are a 1-group, stride-1, unpadded convolution.
    public init(groups: Int = 1, kernel: [Int], strides: [Int] = [1, 1], dilations: [Int] = [1, 1],
                padsBegin: [Int] = [0, 0], padsEnd: [Int] = [0, 0]) {
        self.groups = groups
        self.kernel = kernel
        self.strides = strides
        self.dilations = dilations
        self.padsBegin = padsBegin
        self.padsEnd = padsEnd
    }
}

/// Average pooling attributes (ONNX `AveragePool`, Keras `AveragePooling2D`).
public struct PoolAttributes: Sendable, Equatable {
    /// Window `[kH, kW]`.
    public var kernel: [Int]
    /// Strides `[sH, sW]`.
    public var strides: [Int]
    /// Padding `[top, left]`.
    public var padsBegin: [Int]
    /// Padding `[bottom, right]`.
    public var padsEnd: [Int]
    /// True when padded positions count in the divisor (ONNX `count_include_pad`).
    public var countIncludePad: Bool

    /// Creates pooling attributes.
    public init(kernel: [Int], strides: [Int], padsBegin: [Int] = [0, 0], padsEnd: [Int] = [0, 0],
                countIncludePad: Bool = false) {
        self.kernel = kernel
        self.strides = strides
        self.padsBegin = padsBegin
        self.padsEnd = padsEnd
        self.countIncludePad = countIncludePad
    }
}

/// Fully connected attributes: `Y = alpha * op(A) * op(B) + beta * C` (ONNX `Gemm`, Keras `Dense`).
///
/// Inputs of the node: `[a, b]` or `[a, b, c]`; `b` and `c` are initializers. A Keras `Dense`
/// kernel is `[in, out]`, i.e. `transB == false`. An `a` of shape `[N, C, H, W]` is read
/// flattened, so a Gemm may follow `globalAvgPool` directly.
public struct GemmAttributes: Sendable, Equatable {
    /// Multiplier of the product.
    public var alpha: Float
    /// Multiplier of the bias `c`.
    public var beta: Float
    /// True when `a` is transposed (unsupported by the runtime for activations; kept for verification).
    public var transA: Bool
    /// True when `b` is stored `[N, K]` (PyTorch `Linear` layout) instead of `[K, N]`.
    public var transB: Bool

    /// Creates Gemm attributes; the defaults are a plain `a * b + c`.
    public init(alpha: Float = 1, beta: Float = 1, transA: Bool = false, transB: Bool = false) {
        self.alpha = alpha
        self.beta = beta
        self.transA = transA
        self.transB = transB
    }
}

/// The operation a node performs. Inputs and outputs are listed on the `Node`; the comment of
/// each case gives the expected inputs.
public enum Op: Sendable, Equatable {
    /// `[x, weight(OIHW), bias?]` → `[y]`.
    case conv(ConvAttributes)
    /// `[x, scale, bias, mean, variance]` (all four `[C]` initializers) → `[y]`; folded into the
    /// preceding convolution by the optimiser.
    case batchNorm(epsilon: Float)
    /// `[x]` → `[max(x, 0)]`.
    case relu
    /// `[x]` → `[min(max(x, min), max)]`; `clip(0, 6)` is ReLU6. Importers resolve bounds given as inputs.
    case clip(min: Float, max: Float)
    /// `[a, b]` → `[a + b]`: same shapes (the residual connection), or `b` a constant that
    /// broadcasts against `a` (numpy rules, never along the batch).
    case add
    /// `[x]` (N, C, H, W) → `[y]` (N, C, 1, 1).
    case globalAvgPool
    /// `[x]` → `[y]`.
    case avgPool(PoolAttributes)
    /// `[x]` → `[y]` of shape `[N, product of dims from axis on]`; only axis 1 is supported at run time.
    case flatten(axis: Int)
    /// `[x]` → `[y]` with the target shape (`0` copies a dimension, `-1` is inferred).
    case reshape(shape: [Int])
    /// `[a, b, c?]` → `[y]`.
    case gemm(GemmAttributes)
    /// `[a, b]` → `[a · b]` with `b` a `[K, N]` initializer (`a` read flattened, like `gemm`).
    case matMul
    /// `[x]` → `[softmax(x)]` along `axis`.
    case softmax(axis: Int)
    /// `[x]` → `[x]` (ONNX `Identity`, `Dropout` at inference); removed by the optimiser.
    case identity

    /// A short name for messages and op counts (`"Conv"`, `"BatchNormalization"`, ...).
    public var name: String {
        switch self {
        case .conv: return "Conv"
        case .batchNorm: return "BatchNormalization"
        case .relu: return "Relu"
        case .clip: return "Clip"
        case .add: return "Add"
        case .globalAvgPool: return "GlobalAveragePool"
        case .avgPool: return "AveragePool"
        case .flatten: return "Flatten"
        case .reshape: return "Reshape"
        case .gemm: return "Gemm"
        case .matMul: return "MatMul"
        case .softmax: return "Softmax"
        case .identity: return "Identity"
        }
    }
}

/// One operation in the graph: named, with ordered input and output value names.
public struct Node: Sendable, Equatable {
    /// A name for error messages (the importer's node or layer name; unique names are not required).
    public var name: String
    /// What the node computes.
    public var op: Op
    /// Input value names: activations or initializer names, in the order given by `Op`.
    public var inputs: [String]
    /// Output value names (one per node for every op in this IR).
    public var outputs: [String]

    /// Creates a node.
    public init(name: String, op: Op, inputs: [String], outputs: [String]) {
        self.name = name
        self.op = op
        self.inputs = inputs
        self.outputs = outputs
    }
}

/// A float32 inference graph: nodes in topological order over named values.
///
/// Values are activations (produced by a node or a graph input) or initializers (constant
/// tensors). The graph has one image input `[-1, C, H, W]` and one or more outputs.
public struct Graph: Sendable, Equatable {
    /// Graph inputs (activations fed at run time); initializers are not listed here.
    public var inputs: [ValueInfo]
    /// Graph outputs, by name; shapes may be left `[]` when unknown (the verifier infers them).
    public var outputs: [ValueInfo]
    /// Nodes in topological order (every input is a graph input, an initializer or an earlier output).
    public var nodes: [Node]
    /// Constant tensors by name.
    public var initializers: [String: Tensor]
    /// Outputs whose final Softmax the optimiser removed: the output value (raw logits) → the
    /// original output's name, whose values are the softmax of these over the last axis.
    public var softmaxRemoved: [String: String] = [:]
    /// QDQ annotations (scales and zero points of activations, integer weights); empty for a float model.
    public var quantization = Quantization()

    /// Creates a graph.
    public init(inputs: [ValueInfo], outputs: [ValueInfo], nodes: [Node], initializers: [String: Tensor]) {
        self.inputs = inputs
        self.outputs = outputs
        self.nodes = nodes
        self.initializers = initializers
    }

    /// Count of each op name, e.g. `["Conv": 52, "Clip": 35]`.
    public var opCounts: [String: Int] {
        var counts: [String: Int] = [:]
        for node in nodes { counts[node.op.name, default: 0] += 1 }
        return counts
    }

    /// Total number of parameters (elements of all initializers).
    public var parameterCount: Int {
        initializers.values.reduce(0) { $0 + $1.count }
    }
}
