// The TFLite schema tables framepipe reads, decoded from the flatbuffer into plain values.
//
// Follows tensorflow/compiler/mlir/lite/schema/schema.fbs (schema version 3, file identifier
// "TFL3"); field numbers are the schema's declaration order:
//   Model { version:uint; operator_codes:[OperatorCode]; subgraphs:[SubGraph]; description:string;
//           buffers:[Buffer]; ... }
//   OperatorCode { deprecated_builtin_code:byte; custom_code:string; version:int = 1;
//                  builtin_code:BuiltinOperator(int) }   -- the code is max(deprecated, builtin)
//   SubGraph { tensors:[Tensor]; inputs:[int]; outputs:[int]; operators:[Operator]; name:string }
//   Tensor { shape:[int]; type:TensorType(byte); buffer:uint; name:string;
//            quantization:QuantizationParameters; is_variable:bool; sparsity; shape_signature:[int] }
//   QuantizationParameters { min:[float]; max:[float]; scale:[float]; zero_point:[long];
//                            details_type; details; quantized_dimension:int }
//   Operator { opcode_index:uint; inputs:[int]; outputs:[int]; builtin_options_type:ubyte;
//              builtin_options:table; custom_options:[ubyte]; ... }
//   Buffer { data:[ubyte]; offset:ulong; size:ulong }   -- offset/size: data outside the flatbuffer

/// TFLite's `TensorType` values framepipe handles (others are reported by number).
enum TFLiteType: Int8, CustomStringConvertible {
    case float32 = 0, float16 = 1, int32 = 2, uint8 = 3, int64 = 4, int8 = 9

    /// Bytes per element.
    var size: Int {
        switch self {
        case .float32, .int32: return 4
        case .float16: return 2
        case .uint8, .int8: return 1
        case .int64: return 8
        }
    }

    var description: String {
        switch self {
        case .float32: return "float32"
        case .float16: return "float16"
        case .int32: return "int32"
        case .uint8: return "uint8"
        case .int64: return "int64"
        case .int8: return "int8"
        }
    }
}

/// TFLite `BuiltinOperator` codes of the operators the importer maps.
enum TFLiteOpCode: Int32 {
    case add = 0, averagePool2D = 1, conv2D = 3, depthwiseConv2D = 4, dequantize = 6, fullyConnected = 9
    case relu = 19, relu6 = 21, reshape = 22, softmax = 25, mean = 40, quantize = 114
}

/// `QuantizationParameters`: real = scale * (q - zero_point), per tensor (one scale) or per channel
/// along `dimension`.
struct TFLiteQuantization {
    var scale: [Float]
    var zeroPoint: [Int64]
    var dimension: Int
}

/// One `Tensor` of a subgraph.
struct TFLiteTensor {
    var name: String
    var shape: [Int]
    /// Raw `TensorType` value (see `type`).
    var rawType: Int8
    /// Index into `TFLiteFile.buffers` (0: no data, an activation).
    var buffer: Int
    var quantization: TFLiteQuantization?

    var type: TFLiteType? { TFLiteType(rawValue: rawType) }
    var typeName: String { type?.description ?? "type \(rawType)" }
}

/// One `Operator`: its builtin code (or custom name), tensor indices and options table.
struct TFLiteOperator {
    var code: Int32
    var customCode: String?
    var inputs: [Int]
    var outputs: [Int]
    var optionsType: UInt8
    var options: FBTable?
}

/// A decoded `.tflite` file: the first subgraph (the one the interpreter runs) and the buffers.
struct TFLiteFile {
    let buffer: FlatBuffer
    var version: UInt32
    var description: String?
    var tensors: [TFLiteTensor]
    var inputs: [Int]
    var outputs: [Int]
    var operators: [TFLiteOperator]
    /// Byte ranges of each `Buffer`'s data in `buffer.bytes` (empty for no data).
    var buffers: [Range<Int>]

    /// The 4 bytes at offset 4 of every TFLite file.
    static let identifier: [UInt8] = Array("TFL3".utf8)

    /// True when `bytes` carries the TFLite file identifier.
    static func hasIdentifier(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 8 && Array(bytes[4..<8]) == identifier
    }

    /// Decodes the tables; throws `FlatBufferError` for malformed data.
    init(bytes: [UInt8]) throws {
        guard TFLiteFile.hasIdentifier(bytes) else {
            throw FlatBufferError("no \"TFL3\" file identifier at offset 4")
        }
        let fb = FlatBuffer(bytes)
        self.buffer = fb
        let model = try fb.root()
        version = try model.u32(0)
        guard version == 3 else { throw FlatBufferError("schema version \(version) (only version 3 is known)") }
        description = try model.string(3, "model description")

        // Operator codes.
        var codes: [(Int32, String?)] = []
        if let v = try model.vector(1, elementSize: 4, "operator_codes") {
            for i in 0..<v.count {
                let t = try v.table(i)
                let deprecated = Int32(try t.i8(0))
                let builtin = try t.i32(3)
                codes.append((max(deprecated, builtin), try t.string(1, "custom_code")))
            }
        }

        // Buffers.
        var buffers: [Range<Int>] = []
        if let v = try model.vector(4, elementSize: 4, "buffers") {
            buffers.reserveCapacity(v.count)
            for i in 0..<v.count {
                let t = try v.table(i)
                if let data = try t.vector(0, elementSize: 1, "buffer \(i) data") {
                    buffers.append(data.byteRange)
                } else {
                    let offset = try t.u64(1), size = try t.u64(2)
                    if offset > 1 {  // data after the flatbuffer, offset from the file's start
                        guard offset <= UInt64(bytes.count), size <= UInt64(bytes.count) - offset else {
                            throw FlatBufferError("buffer \(i): \(size) byte(s) at offset \(offset) lie outside the \(bytes.count)-byte file")
                        }
                        buffers.append(Int(offset)..<Int(offset + size))
                    } else {
                        buffers.append(0..<0)
                    }
                }
            }
        }
        self.buffers = buffers

        // The first subgraph.
        guard let subgraphs = try model.vector(2, elementSize: 4, "subgraphs"), subgraphs.count > 0 else {
            throw FlatBufferError("the model has no subgraph")
        }
        let g = try subgraphs.table(0)
        var tensors: [TFLiteTensor] = []
        if let v = try g.vector(0, elementSize: 4, "tensors") {
            tensors.reserveCapacity(v.count)
            for i in 0..<v.count {
                let t = try v.table(i)
                var quant: TFLiteQuantization?
                if let q = try t.table(4, "tensor \(i) quantization") {
                    let scales = try q.vector(2, elementSize: 4, "tensor \(i) scale")
                    let zeros = try q.vector(3, elementSize: 8, "tensor \(i) zero_point")
                    if let scales, scales.count > 0 {
                        quant = TFLiteQuantization(
                            scale: try (0..<scales.count).map { try scales.f32($0) },
                            zeroPoint: try zeros.map { z in try (0..<z.count).map { try z.i64($0) } } ?? [],
                            dimension: Int(try q.i32(6)))
                    }
                }
                tensors.append(TFLiteTensor(
                    name: try t.string(3, "tensor \(i) name") ?? "",
                    shape: try t.ints(0, "tensor \(i) shape"),
                    rawType: try t.i8(1),
                    buffer: Int(try t.u32(2)),
                    quantization: quant))
            }
        }
        self.tensors = tensors
        inputs = try g.ints(1, "subgraph inputs")
        outputs = try g.ints(2, "subgraph outputs")
        var ops: [TFLiteOperator] = []
        if let v = try g.vector(3, elementSize: 4, "operators") {
            ops.reserveCapacity(v.count)
            for i in 0..<v.count {
                let t = try v.table(i)
                let index = Int(try t.u32(0))
                guard index < codes.count else {
                    throw FlatBufferError("operator \(i): opcode index \(index) but the file has \(codes.count) operator code(s)")
                }
                ops.append(TFLiteOperator(
                    code: codes[index].0, customCode: codes[index].1,
                    inputs: try t.ints(1, "operator \(i) inputs"),
                    outputs: try t.ints(2, "operator \(i) outputs"),
                    optionsType: try t.u8(3),
                    options: try t.table(4, "operator \(i) options")))
            }
        }
        self.operators = ops
    }
}
