// Quantization annotations of the graph IR, filled by the ONNX importer from QDQ models
// (QuantizeLinear / DequantizeLinear pairs, onnx/docs/Operators.md) and read by the int8 runtime.
//
// The IR itself stays float32: a QDQ model imports as its float graph with weights dequantized
// once (what `--precision fp32` runs), plus these annotations, which say for each activation the
// scale and zero point its QuantizeLinear applies, and for each weight its integer values.

/// One QuantizeLinear / DequantizeLinear parameter set: `real = scale * (q - zeroPoint)`.
public struct QuantParams: Sendable, Equatable {
    /// Scales, one (per tensor) or one per index along `axis`.
    public var scales: [Float]
    /// Zero points, as many as `scales`.
    public var zeroPoints: [Int]
    /// True for int8 (-128...127), false for uint8 (0...255); int32 for biases is `bits == 32`.
    public var signed: Bool
    /// 8 for activations and weights, 32 for int32 biases.
    public var bits: Int
    /// The axis of per-axis parameters (normalised to be non-negative), nil when per tensor.
    public var axis: Int?

    /// Creates a parameter set.
    public init(scales: [Float], zeroPoints: [Int], signed: Bool, bits: Int = 8, axis: Int? = nil) {
        self.scales = scales
        self.zeroPoints = zeroPoints
        self.signed = signed
        self.bits = bits
        self.axis = axis
    }

    /// The representable range of the integer type.
    public var range: ClosedRange<Int> {
        switch (bits, signed) {
        case (32, _): return Int(Int32.min)...Int(Int32.max)
        case (_, true): return -128...127
        default: return 0...255
        }
    }

    /// True when there is one scale for the whole tensor.
    public var perTensor: Bool { scales.count == 1 }

    /// The single scale of a per-tensor parameter set.
    public var scale: Float { scales[0] }

    /// The zero point as if the values were stored as uint8 (int8 values shifted by +128).
    public var unsignedZeroPoint: Int { signed ? zeroPoints[0] + 128 : zeroPoints[0] }

    /// `QuantizeLinear` of one value: round half to even, then saturate (Operators.md).
    public func quantize(_ x: Float, channel: Int = 0) -> Int {
        let s = scales[scales.count == 1 ? 0 : channel], z = zeroPoints[zeroPoints.count == 1 ? 0 : channel]
        let q = Int((x / s).rounded(.toNearestOrEven)) + z
        return min(max(q, range.lowerBound), range.upperBound)
    }
}

/// A constant tensor given in integer form (a DequantizeLinear of an initializer).
public struct QuantizedWeight: Sendable, Equatable {
    /// The tensor's shape (as the float initializer it dequantizes to).
    public var shape: [Int]
    /// Integer values in row-major order.
    public var values: [Int32]
    /// Its scales and zero points.
    public var params: QuantParams

    /// Creates a quantized constant.
    public init(shape: [Int], values: [Int32], params: QuantParams) {
        self.shape = shape
        self.values = values
        self.params = params
    }
}

/// The QDQ annotations of a graph: empty for a float model.
public struct Quantization: Sendable, Equatable {
    /// Activation value (float name in the IR) → the quantization its QDQ pair applies.
    public var activations: [String: QuantParams] = [:]
    /// Float initializer name → the integer tensor it was dequantized from.
    public var weights: [String: QuantizedWeight] = [:]

    /// Creates empty annotations.
    public init() {}

    /// True for a float model (no QDQ pairs).
    public var isEmpty: Bool { activations.isEmpty && weights.isEmpty }
}
