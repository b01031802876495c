// The int8 runtime: lowers the layers of a QDQ model to oneDNN int8 primitives (oneDNN 2.6
// dev_guide_convolution / dev_guide_attributes_quantization: u8/s8 source, s8 weights, s32
// accumulation, per-channel output scales, post-ops applied in f32 before the final rounding).
//
// Semantics, per fused layer (a Conv with its activations and residual Add, as Lowering.swift
// groups them), with `s`/`z` the scale and zero point of each QDQ pair:
//     acc  = sum((x_q - z_x) * w_q) + bias / (s_x * s_w)             (int32 in oneDNN)
//     y_q  = saturate(round_half_even(s_x * s_w / s_y * acc  [activation bounds / s_y]
//                                     + s_r / s_y * (r_q - z_r) + z_y))
// Zero points are folded into the f32 bias (exact: a 1x1 convolution has no padding; a padded
// convolution needs its input's zero point to be 0 in the stored type, which holds for ReLU
// outputs, or oneDNN's source zero-point attribute). onnxruntime rounds the Conv result before a
// residual Add; here the sum happens before the one rounding (a difference of at most one step).
// Activations are stored as uint8 (int8 values shifted by 128: same scale, zero point + 128) on
// VNNI CPUs and as int8 without VNNI (see `int8UnsignedSourceIsExact`); a value read by a padded
// convolution keeps zero point 0 in its stored type (uint8 for ReLU outputs, int8 for zero point 128). Anything else a QDQ model asks for and this cannot represent fails naming the node.
import CDNNL

/// How one activation is stored in the int8 network.
struct Int8Value {
    /// u8 or s8 (or f32 for a value left in float).
    var type: dnnl_data_type_t
    /// `real = scale * (stored - zeroPoint)`.
    var scale: Float
    var zeroPoint: Int
}

/// Whether uint8 sources are exact on this CPU. Without VNNI, oneDNN's int8 kernels multiply
/// u8 x s8 and add pairs into int16 (vpmaddubsw), which saturates for large values (uint8 data
/// with a zero point near 128 overflows on most pixels); for int8 sources oneDNN halves the
/// weights instead (the `sa0.5` of ONEDNN_VERBOSE), which never saturates but keeps 7 bits of
/// each weight. With VNNI (vpdpbusd: int32 sums) uint8 is exact and the fastest.
/// (To fold into the per-ISA format table at merge.)
func int8UnsignedSourceIsExact() -> Bool {
    let isa = dnnl_get_effective_cpu_isa().rawValue
    return isa & dnnl_cpu_isa_avx512_core_vnni.rawValue == dnnl_cpu_isa_avx512_core_vnni.rawValue
        || isa & dnnl_cpu_isa_avx2_vnni.rawValue == dnnl_cpu_isa_avx2_vnni.rawValue
}

extension Engine {
    /// True when this CPU's int8 kernels compute the exact integer result for full-range weights (VNNI).
    public static var int8IsExact: Bool { int8UnsignedSourceIsExact() }
}

/// The activation layout of the int8 network on this CPU. oneDNN's int8 convolutions (jit avx2,
/// avx512_core, VNNI and AMX brgconv) all take channels-last activations; blocked nChw8c/16c int8
/// is served by fewer kernels. (To fold into the per-ISA format table at merge.)
func int8ActivationTag() -> dnnl_format_tag_t { dnnl_nhwc }

extension Network {
    private func failure(_ layer: String, _ reason: String) -> InferenceError {
        InferenceError(source: sourceName, node: layer, op: "int8", reason: reason)
    }

    /// The QDQ parameters of `value`, or an error naming the layer.
    private func params(_ value: String, _ layer: String, model: Model) throws -> QuantParams {
        guard let p = model.graph.quantization.activations[value] else {
            throw failure(layer, "'\(value)' has no QuantizeLinear/DequantizeLinear pair: an int8 model must quantize every activation between layers")
        }
        guard p.perTensor, p.bits == 8 else { throw failure(layer, "'\(value)' must be quantized per tensor to 8 bits") }
        return p
    }

    /// True when a layer reading `value` pads it (the padded positions must be the real value 0).
    private func paddedReaders(_ value: String, _ lowered: LoweredGraph) -> Bool {
        lowered.layers.contains { layer in
            switch layer {
            case let .conv(_, a, _, _, input, _, _, _, dw):
                return (input == value && (a.padsBegin + a.padsEnd).contains { $0 > 0 })
                    || (dw?.intermediate == value && (dw!.attrs.padsBegin + dw!.attrs.padsEnd).contains { $0 > 0 })
            case let .pool(_, attrs, input, _):
                return input == value && ((attrs?.padsBegin ?? []) + (attrs?.padsEnd ?? [])).contains { $0 > 0 }
            default: return false
            }
        }
    }

    /// The storage chosen for an annotated value (see the file comment).
    private func storage(_ value: String, _ layer: String, model: Model, lowered: LoweredGraph) throws -> Int8Value {
        if let known = int8Values[value] { return known }
        let p = try params(value, layer, model: model)
        let z = p.unsignedZeroPoint
        let v: Int8Value
        if paddedReaders(value, lowered) {
            // Padding must be the real 0: zero point 0 in the stored type (or the source zero-point attribute).
            let signed = z == 128 && !int8UnsignedSourceIsExact()
            v = signed ? Int8Value(type: dnnl_s8, scale: p.scale, zeroPoint: 0) : Int8Value(type: dnnl_u8, scale: p.scale, zeroPoint: z)
        } else if int8UnsignedSourceIsExact() {
            v = Int8Value(type: dnnl_u8, scale: p.scale, zeroPoint: z)
        } else {
            v = Int8Value(type: dnnl_s8, scale: p.scale, zeroPoint: z - 128)
        }
        int8Values[value] = v
        return v
    }

    /// Attributes with output scales (per output channel when they differ), an optional source
    /// zero point and post-ops (eltwise clip_v2 / linear, sum with a scale and data type).
    private func int8Attributes(scales: [Float], sourceZeroPoint: Int32 = 0,
                                postOps: [(kind: String, a: Float, b: Float, type: dnnl_data_type_t)]) throws -> PrimitiveAttributes {
        let attrs = try PrimitiveAttributes()
        let common = scales.allSatisfy { $0 == scales[0] }
        var s = common ? [scales[0]] : scales
        try dnnl(dnnl_primitive_attr_set_output_scales(attrs.handle, Int64(s.count), common ? 0 : 1 << 1, &s), "set output scales")
        if sourceZeroPoint != 0 {
            var z = sourceZeroPoint
            try dnnl(dnnl_primitive_attr_set_zero_points(attrs.handle, Arg.src, 1, 0, &z), "set source zero point")
        }
        guard !postOps.isEmpty else { return attrs }
        var p: dnnl_post_ops_t?
        try dnnl(dnnl_post_ops_create(&p), "create post-ops")
        defer { dnnl_post_ops_destroy(p) }
        for op in postOps {
            switch op.kind {
            case "sum": try dnnl(dnnl_post_ops_append_sum_v2(p, op.a, op.type), "append sum post-op")
            case "linear": try dnnl(dnnl_post_ops_append_eltwise(p, 1, dnnl_eltwise_linear, op.a, op.b), "append linear post-op")
            default: try dnnl(dnnl_post_ops_append_eltwise(p, 1, dnnl_eltwise_clip_v2, op.a, op.b), "append clip post-op")
            }
        }
        try dnnl(dnnl_primitive_attr_set_post_ops(attrs.handle, p), "set post-ops")
        return attrs
    }

    /// Per-output-channel weight scales of a quantized weight with `outputs` channels along `axis`.
    private func weightScales(_ w: QuantizedWeight, outputs: Int, axis: Int, _ layer: String) throws -> [Float] {
        guard w.params.bits == 8, w.params.signed else { throw failure(layer, "weights must be int8 (uint8 weights have no oneDNN kernel)") }
        guard w.params.zeroPoints.allSatisfy({ $0 == 0 }) else {
            throw failure(layer, "weight zero points must be 0 (symmetric weights); got \(w.params.zeroPoints.first { $0 != 0 }!)")
        }
        if w.params.perTensor { return [Float](repeating: w.params.scale, count: outputs) }
        guard w.params.axis == axis, w.params.scales.count == outputs else {
            throw failure(layer, "per-axis weight scales must run along the output channels (axis \(axis)), got axis \(w.params.axis ?? -1)")
        }
        return w.params.scales
    }

    /// Compiles one layer of an int8 network (the `.int8` branch of `compile`).
    func compileInt8(_ layer: Layer, index: Int, model: Model, lowered: LoweredGraph, lastUse: [String: Int],
                     weights: WeightCache) throws {
        defer { releaseTemporaries() }
        switch layer {
        case let .conv(name, a, weight, bias, input, output, postOps, residual, depthwise):
            if let dw = depthwise {
                // int8 1x1 + depthwise fusion runs as ref_fused_convolution in oneDNN 2.6: keep them apart.
                var uses = lastUse
                uses[dw.intermediate] = index
                try compileInt8(.conv(name: name, attrs: a, weight: weight, bias: bias, input: input, output: dw.intermediate,
                                      postOps: postOps, residual: nil), index: index, model: model, lowered: lowered,
                                lastUse: uses, weights: weights)
                try compileInt8(.conv(name: dw.name, attrs: dw.attrs, weight: dw.weight, bias: dw.bias, input: dw.intermediate,
                                      output: output, postOps: dw.postOps, residual: nil), index: index, model: model,
                                lowered: lowered, lastUse: uses, weights: weights)
                if let slot = slotOf.removeValue(forKey: dw.intermediate), !slotOf.values.contains(slot) { freeSlots.append(slot) }
                return
            }
            guard let node = model.graph.nodes.first(where: {
                if case .conv = $0.op { return $0.name == name && lowered.physical($0.inputs[0]) == input }
                return false
            }), let qw = model.graph.quantization.weights[node.inputs[1]] else {
                throw failure(name, "the weight is not quantized (no DequantizeLinear of an int8 initializer)")
            }
            guard let src = int8Values[input], src.type != dnnl_f32 else { throw failure(name, "input '\(input)' is not quantized") }
            let oc = weight.shape[0]
            let sw = try weightScales(qw, outputs: oc, axis: 0, name)
            let dst = try storage(output, name, model: model, lowered: lowered)
            let res = try residual.map { try storage($0, name, model: model, lowered: lowered) }
            let padded = (a.padsBegin + a.padsEnd).contains { $0 > 0 }
            let perOC = weight.count / oc
            // Accumulator-domain bias with every zero point folded in (see the file comment).
            let m = sw.map { src.scale * $0 / dst.scale }
            let shiftBeforeSum = Float(dst.zeroPoint) - (res.map { $0.scale / dst.scale * Float($0.zeroPoint) } ?? 0)
            var b = [Float](repeating: 0, count: oc)
            for o in 0..<oc {
                var acc = bias.map { $0.data[o] / (src.scale * sw[o]) } ?? 0
                if !padded && src.zeroPoint != 0 {
                    var sum: Int = 0
                    for k in 0..<perOC { sum += Int(qw.values[o * perOC + k]) }
                    acc -= Float(src.zeroPoint * sum)
                }
                b[o] = acc + shiftBeforeSum / m[o]
            }
            var ops: [(kind: String, a: Float, b: Float, type: dnnl_data_type_t)] = []
            var afterSum = false
            for op in postOps {
                switch op {
                case .sum:
                    ops.append(("sum", res!.scale / dst.scale, 0, res!.type))
                    afterSum = true
                case let .eltwise(alg, lo, hi):
                    let shift = afterSum ? Float(dst.zeroPoint) : shiftBeforeSum
                    let (low, high) = alg == dnnl_eltwise_relu ? (Float(0), Float.greatestFiniteMagnitude) : (lo, hi)
                    ops.append(("clip", max(low / dst.scale, -1e30) + shift, min(high / dst.scale, 1e30) + shift, dnnl_f32))
                case .depthwise:
                    throw failure(name, "fused depthwise post-op in int8")
                }
            }
            if let r = residual, res!.type != dst.type {
                throw failure(name, "residual '\(r)' and the output are stored in different 8-bit types")
            }
            let srcZero: Int32 = padded ? Int32(src.zeroPoint) : 0
            let attrs = try int8Attributes(scales: m, sourceZeroPoint: srcZero, postOps: ops)
            let dims = descs[input]!.dimensions
            let oh = (dims[2] + a.padsBegin[0] + a.padsEnd[0] - (a.dilations[0] * (a.kernel[0] - 1) + 1)) / a.strides[0] + 1
            let ow = (dims[3] + a.padsBegin[1] + a.padsEnd[1] - (a.dilations[1] * (a.kernel[1] - 1) + 1)) / a.strides[1] + 1
            let grouped = a.groups > 1
            let wDims = grouped ? [a.groups, oc / a.groups, weight.shape[1], a.kernel[0], a.kernel[1]] : weight.shape
            var s = descs[input]!
            var w = try MD.make(wDims, dnnl_s8, dnnl_format_tag_any)
            var d = try residual.map { descs[$0]! } ?? MD.make([batch, oc, oh, ow], dst.type, int8ActivationTag())
            var bd = try MD.make([oc], dnnl_f32, dnnl_x)
            var desc = dnnl_convolution_desc_t()
            var strides = a.strides.map(Int64.init) + [Int64](repeating: 0, count: 10)
            var dil = a.dilations.map { Int64($0 - 1) } + [Int64](repeating: 0, count: 10)
            var pl = a.padsBegin.map(Int64.init) + [Int64](repeating: 0, count: 10)
            var pr = a.padsEnd.map(Int64.init) + [Int64](repeating: 0, count: 10)
            try dnnl(dnnl_dilated_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct,
                                                               &s, &w, &bd, &d, &strides, &dil, &pl, &pr), "describe int8 convolution")
            let prim: Primitive
            do { prim = try Primitive(opDesc: &desc, attributes: attrs, context: context, what: "int8 convolution") } catch {
                if srcZero != 0 {
                    throw failure(name, "input zero point \(srcZero) with padding: oneDNN has no int8 kernel with a source zero point for this convolution on \(Engine.cpuISA) (\(error))")
                }
                throw error
            }
            let wMem = try weights.memory(name + "/int8 weight", desc: prim.query(dnnl_query_weights_md),
                                          tensor: Tensor(shape: weight.shape, data: qw.values.map(Float.init)),
                                          plainDims: wDims, context: context)
            let bMem = try weights.memory(name + "/int8 bias", desc: bd, tensor: Tensor(shape: [oc], data: b),
                                          plainDims: [oc], context: context)
            let dstDesc = prim.query(dnnl_query_dst_md)
            var dstMem: Memory
            if let r = residual {
                if lastUse[r] == index, r != input, let slot = slotOf[r], MD.equal(descs[r]!, dstDesc) {
                    dstMem = try allocate(output, dstDesc, reuse: slot)
                } else {
                    dstMem = try allocate(output, dstDesc)
                    steps.append(try makeStep(Primitive(reorderFrom: descs[r]!, to: dstDesc, context: context),
                                              [(Arg.from, memories[r]!), (Arg.to, dstMem)], layer: name + " (residual copy)"))
                }
            } else {
                dstMem = try allocate(output, dstDesc)
            }
            let srcMem = try source(input, as: prim.query(dnnl_query_src_md), layer: name)
            steps.append(try makeStep(prim, [(Arg.src, srcMem), (Arg.weights, wMem), (Arg.bias, bMem), (Arg.dst, dstMem)], layer: name))

        case let .eltwise(name, alg, lo, hi, input, output):
            // A Clip as wide as the output's integer range is the QDQ pair's own saturation.
            let p = try params(output, name, model: model)
            let low = p.scale * Float(p.range.lowerBound - p.zeroPoints[0])
            let high = p.scale * Float(p.range.upperBound - p.zeroPoints[0])
            guard alg == dnnl_eltwise_clip_v2, lo <= low + 1e-6 * abs(low), hi >= high - 1e-6 * abs(high) else {
                throw failure(name, "a standalone activation between quantized values is not supported in int8")
            }
            let have = descs[input]!
            if have.data_type == dnnl_f32 {
                // Quantize the float input (QuantizeLinear: scale, round half to even, saturate).
                let v = try storage(output, name, model: model, lowered: lowered)
                let want = try MD.make(have.dimensions, v.type, int8ActivationTag())
                let attrs = try PrimitiveAttributes()
                var scale = 1 / v.scale
                try dnnl(dnnl_primitive_attr_set_output_scales(attrs.handle, 1, 0, &scale), "set quantization scale")
                if v.zeroPoint != 0 {
                    var z = Int32(v.zeroPoint)
                    try dnnl(dnnl_primitive_attr_set_zero_points(attrs.handle, Arg.dst, 1, 0, &z), "set quantization zero point")
                }
                let dst = lastUse[input] == index && have.data_type != dnnl_f32 ? try allocate(output, want, reuse: slotOf[input])
                                                                              : try allocate(output, want)
                steps.append(try makeStep(Primitive(reorderFrom: have, to: want, context: context, attributes: attrs),
                                          [(Arg.from, memories[input]!), (Arg.to, dst)], layer: name + " (quantize)"))
            } else {
                guard let v = int8Values[input], (try? params(input, name, model: model)) == p else {
                    throw failure(name, "requantization between different scales is not supported")
                }
                int8Values[output] = v
                descs[output] = have
                memories[output] = memories[input]
                if let slot = slotOf[input] { slotOf[output] = slot }
            }

        case let .pool(name, attrs, input, output):
            guard let src = int8Values[input], src.type != dnnl_f32 else { throw failure(name, "input '\(input)' is not quantized") }
            let dst = try storage(output, name, model: model, lowered: lowered)
            if attrs?.countIncludePad == true, src.zeroPoint != 0 {
                throw failure(name, "count_include_pad with a nonzero input zero point is not representable")
            }
            let desc0 = descs[input]!
            let dims = desc0.dimensions
            let kernel = attrs?.kernel ?? [dims[2], dims[3]]
            let strides = attrs?.strides ?? [1, 1]
            let pb = attrs?.padsBegin ?? [0, 0], pe = attrs?.padsEnd ?? [0, 0]
            let oh = (dims[2] + pb[0] + pe[0] - kernel[0]) / strides[0] + 1
            let ow = (dims[3] + pb[1] + pe[1] - kernel[1]) / strides[1] + 1
            var s = desc0, d = try MD.make([batch, dims[1], oh, ow], dst.type, int8ActivationTag())
            var op = dnnl_pooling_v2_desc_t()
            func pad(_ v: [Int]) -> [Int64] { v.map(Int64.init) + [Int64](repeating: 0, count: 12 - v.count) }
            var st = pad(strides), k = pad(kernel), dil = pad([0, 0]), l = pad(pb), r = pad(pe)
            let alg = attrs?.countIncludePad == true ? dnnl_pooling_avg_include_padding : dnnl_pooling_avg_exclude_padding
            try dnnl(dnnl_pooling_v2_forward_desc_init(&op, dnnl_forward_inference, alg, &s, &d, &st, &k, &dil, &l, &r),
                     "describe int8 average pooling")
            // y = s_x / s_y * (mean(x) - z_x) + z_y, rounded once.
            let ratio = src.scale / dst.scale
            let pa = try PrimitiveAttributes()
            var p: dnnl_post_ops_t?
            try dnnl(dnnl_post_ops_create(&p), "create post-ops")
            defer { dnnl_post_ops_destroy(p) }
            try dnnl(dnnl_post_ops_append_eltwise(p, 1, dnnl_eltwise_linear, ratio, Float(dst.zeroPoint) - ratio * Float(src.zeroPoint)),
                     "append linear post-op")
            try dnnl(dnnl_primitive_attr_set_post_ops(pa.handle, p), "set post-ops")
            let prim = try Primitive(opDesc: &op, attributes: pa, context: context, what: "int8 pooling")
            let dstMem = try allocate(output, prim.query(dnnl_query_dst_md))
            steps.append(try makeStep(prim, [(Arg.src, memories[input]!), (Arg.dst, dstMem)], layer: name))

        case let .innerProduct(name, weight, bias, input, output):
            guard let node = model.graph.nodes.first(where: { n in
                switch n.op { case .gemm, .matMul: return n.name == name; default: return false }
            }), let qw = model.graph.quantization.weights[node.inputs[1]] else {
                throw failure(name, "the weight is not quantized (no DequantizeLinear of an int8 initializer)")
            }
            guard let src = int8Values[input], src.type != dnnl_f32 else { throw failure(name, "input '\(input)' is not quantized") }
            let oc = weight.shape[0], k = weight.shape[1]
            var alpha: Float = 1, outAxis = 1
            if case let .gemm(g) = node.op { alpha = g.alpha; outAxis = g.transB ? 0 : 1 }
            let sw = try weightScales(qw, outputs: oc, axis: outAxis, name).map { $0 * alpha }
            let dst: Int8Value? = model.graph.quantization.activations[output] == nil ? nil
                : try storage(output, name, model: model, lowered: lowered)
            let outScale = dst?.scale ?? 1
            let m = sw.map { src.scale * $0 / outScale }
            var q = [Float](repeating: 0, count: weight.count)
            var b = [Float](repeating: 0, count: oc)
            for o in 0..<oc {
                var sum = 0
                for j in 0..<k {
                    let v = (weight.data[o * k + j] / sw[o]).rounded(.toNearestOrEven)
                    q[o * k + j] = v
                    sum += Int(v)
                }
                b[o] = (bias.map { $0.data[o] / (src.scale * sw[o]) } ?? 0) - Float(src.zeroPoint * sum)
                    + Float(dst?.zeroPoint ?? 0) / m[o]
            }
            let dims = descs[input]!.dimensions
            let wDims = [oc] + Array(dims.dropFirst())
            var s = descs[input]!
            var w = try MD.make(wDims, dnnl_s8, dnnl_format_tag_any)
            var bd = try MD.make([oc], dnnl_f32, dnnl_x)
            var d = try MD.make([batch, oc], dst?.type ?? dnnl_f32, dnnl_nc)
            var op = dnnl_inner_product_desc_t()
            try dnnl(dnnl_inner_product_forward_desc_init(&op, dnnl_forward_inference, &s, &w, &bd, &d), "describe int8 inner product")
            let prim = try Primitive(opDesc: &op, attributes: int8Attributes(scales: m, postOps: []), context: context,
                                     what: "int8 inner product")
            let wMem = try weights.memory(name + "/int8 weight", desc: prim.query(dnnl_query_weights_md),
                                          tensor: Tensor(shape: wDims, data: q), plainDims: wDims, context: context)
            let bMem = try weights.memory(name + "/int8 bias", desc: bd, tensor: Tensor(shape: [oc], data: b),
                                          plainDims: [oc], context: context)
            let dstMem = try allocate(output, prim.query(dnnl_query_dst_md))
            if let dst { int8Values[output] = dst } else { int8Values[output] = Int8Value(type: dnnl_f32, scale: 1, zeroPoint: 0) }
            let srcMem = try source(input, as: prim.query(dnnl_query_src_md), layer: name)
            steps.append(try makeStep(prim, [(Arg.src, srcMem), (Arg.weights, wMem), (Arg.bias, bMem), (Arg.dst, dstMem)], layer: name))

        case let .add(name, _, _, _):
            throw failure(name, "an Add that does not follow a Conv is not supported in int8")
        }
    }

    /// Attributes of the reorder that hands an int8 network's output to the caller as f32
    /// (DequantizeLinear: scale and zero point), nil for a float output.
    func int8OutputAttributes(_ value: String) throws -> PrimitiveAttributes? {
        guard let v = int8Values[value], v.type != dnnl_f32 else { return nil }
        let attrs = try PrimitiveAttributes()
        var scale = v.scale
        try dnnl(dnnl_primitive_attr_set_output_scales(attrs.handle, 1, 0, &scale), "set dequantization scale")
        if v.zeroPoint != 0 {
            var z = Int32(v.zeroPoint)
            try dnnl(dnnl_primitive_attr_set_zero_points(attrs.handle, Arg.src, 1, 0, &z), "set dequantization zero point")
        }
        return attrs
    }
}
