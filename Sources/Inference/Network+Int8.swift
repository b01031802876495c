// The int8 runtime: lowers the layers of a QDQ model to oneDNN int8 primitives (oneDNN 2.6
// dev_guide_convolution / dev_guide_attributes_quantization: u8/s8 source, s8 weights, s32
// accumulation, per-channel output scales, f32 post-ops before the final conversion).
//
// The arithmetic is onnxruntime's (MLAS QuantizeLinear / requantization / QLinearAdd), which is
// also the QDQ graph's up to where float ops round. With `s`/`z` the scale and zero point of
// each QDQ pair and the int32 bias `b` (scale s_x * s_w, as quantizers write it):
//     quantize:  x_q = saturate(round_half_even(x / s_x) + z_x)     (division, clamp, round, + z)
//     conv:      y_q = saturate(round_half_even(s_x * s_w / s_y * (sum((x_q - z_x) * w_q) + b)) + z_y)
//     + residual Add r (after the conv's own pair c, which onnxruntime rounds to first):
//                y_q = saturate(round_half_even(s_c / s_y * (c_q - z_c) + s_r / s_y * (r_q - z_r)) + z_y)
// oneDNN 2.6 adds the bias in accumulator units before the output scales, and its post-op chain
// runs in f32 on the scaled result: clip, round and linear post-ops rebuild "round, then add the
// zero point" (adding an odd zero point before rounding moves ties; in f32 it also makes new ones).
// A source zero point is folded into the bias for unpadded convolutions (exact) and given to
// oneDNN at run time for padded ones (padding is the zero point, a real 0).
// Activations are stored as uint8 on every CPU (an int8 model's values shifted by 128: same
// scale, zero point + 128), so int8 and uint8 models take one path. Without VNNI (FormatPlan's
// `pairSums16`), oneDNN's u8 x s8 kernels add products in pairs into saturating int16
// (vpmaddubsw); a layer whose weights could overflow that (`int8PairsFitInt16`) gets its weights
// halved to 7 bits and its output scale doubled, which is what oneDNN itself does for s8 sources
// on such CPUs, but here only where needed: 7-bit `reduce_range` models stay exact. Anything else
// a QDQ model asks for and this cannot represent fails naming the node.
import CDNNL
import Foundation

/// How one activation is stored in the int8 network.
struct Int8Value {
    /// u8 or s8 (or f32 for a value left in float).
    var type: dnnl_data_type_t
    /// `real = scale * (stored - zeroPoint)`.
    var scale: Float
    var zeroPoint: Int
}

/// True when 255 * (w_i + w_j) fits in int16 for every two weights of one output channel
/// (`values` holds `outputs` rows of `perOutput` weights): then vpmaddubsw's pairwise sums of
/// u8 x s8 products cannot saturate whatever pair of input channels or taps a kernel forms.
/// True for the 7-bit weights of `reduce_range` models; false for most full-range weights.
func int8PairsFitInt16(_ values: [Int32], outputs: Int, perOutput: Int) -> Bool {
    for o in 0..<outputs {
        var pos = (Int32(0), Int32(0)), neg = (Int32(0), Int32(0))
        for w in values[(o * perOutput)..<((o + 1) * perOutput)] {
            if w > pos.0 { pos = (w, pos.0) } else if w > pos.1 { pos.1 = w }
            if w < neg.0 { neg = (w, neg.0) } else if w < neg.1 { neg.1 = w }
        }
        if 255 * Int(pos.0 + pos.1) > Int(Int16.max) || 255 * Int(neg.0 + neg.1) < Int(Int16.min) { return false }
    }
    return true
}

extension Engine {
    /// True when this CPU's int8 kernels compute the exact integer result for full-range weights
    /// (VNNI: int32 sums). Without it, layers whose weights could saturate int16 pair sums run with
    /// 7-bit (halved) weights; `reduce_range` (7-bit) models are exact everywhere.
    public static var int8IsExact: Bool { FormatPlan.plan(for: .int8).map { !$0.pairSums16 } ?? false }
}

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

    /// The storage of an annotated value: uint8 with the zero point shifted for int8 models
    /// (same scale; oneDNN's u8 sources need no compensation pass, and VNNI takes u8 x s8).
    private func storage(_ value: String, _ layer: String, model: Model, lowered: LoweredGraph) throws -> Int8Value {
        if let known = int8Values[value] { return known }
        let p = try params(value, layer, model: model)
        let v = Int8Value(type: dnnl_u8, scale: p.scale, zeroPoint: p.unsignedZeroPoint)
        int8Values[value] = v
        return v
    }

    /// The activation layout of the int8 network (FormatPlan's int8 rows: nhwc).
    private var int8Tag: dnnl_format_tag_t { plan.activations.tag ?? dnnl_nhwc }

    /// One step of an int8 primitive's f32 post-op chain (applied after the output scales).
    enum Int8PostOp {
        /// `x = min(max(x, low), high)`.
        case clip(Float, Float)
        /// `x = round half to even (x)` (`dnnl_eltwise_round`).
        case round
        /// `x = a * x + b`.
        case linear(Float, Float)
        /// `x += scale * destination` (the residual, stored as `type`, already in the destination).
        case sum(Float, dnnl_data_type_t)
    }

    /// Attributes with output scales (per output channel when they differ; nil: none), an optional
    /// run-time source zero point and a post-op chain.
    func int8Attributes(scales: [Float]?, sourceZeroPoint: Int32 = 0, postOps: [Int8PostOp]) throws -> PrimitiveAttributes {
        let attrs = try PrimitiveAttributes()
        if let scales {
            let common = scales.allSatisfy { $0 == scales[0] }
            var s = common ? [scales[0]] : scales
            try dnnl(dnnl_primitive_attr_set_output_scales(attrs.handle, Int64(s.count), common ? 0 : 1 << 1, &s), "set output scales")
        }
        if sourceZeroPoint != 0 {
            // Given at run time (`int8ZeroPointArgument`).
            var z = Int32.min   // DNNL_RUNTIME_S32_VAL
            try dnnl(dnnl_primitive_attr_set_zero_points(attrs.handle, Arg.src, 1, 0, &z), "set source zero point")
        }
        guard !postOps.isEmpty else { return attrs }
        var p: dnnl_post_ops_t?
        try dnnl(dnnl_post_ops_create(&p), "create post-ops")
        defer { dnnl_post_ops_destroy(p) }
        for op in postOps {
            switch op {
            case let .sum(scale, type): try dnnl(dnnl_post_ops_append_sum_v2(p, scale, type), "append sum post-op")
            case let .linear(a, b): try dnnl(dnnl_post_ops_append_eltwise(p, 1, dnnl_eltwise_linear, a, b), "append linear post-op")
            case let .clip(lo, hi): try dnnl(dnnl_post_ops_append_eltwise(p, 1, dnnl_eltwise_clip_v2, lo, hi), "append clip post-op")
            case .round: try dnnl(dnnl_post_ops_append_eltwise(p, 1, dnnl_eltwise_round, 0, 0), "append round post-op")
            }
        }
        try dnnl(dnnl_primitive_attr_set_post_ops(attrs.handle, p), "set post-ops")
        return attrs
    }

    /// The post-ops that finish a requantization as onnxruntime's does (MLAS: clamp to the integer
    /// range less the zero point, round half to even, then add the zero point): the chain's value
    /// is the result in output steps without its zero point. Rounding before adding the zero point
    /// matters: in f32, `v + z` can land on a tie that `v` is not on (or the reverse), and ties
    /// round to even. With a zero point of 0 the final conversion rounds the same way.
    func requantize(zeroPoint z: Int, low: Float = -.greatestFiniteMagnitude, high: Float = .greatestFiniteMagnitude) -> [Int8PostOp] {
        let lo = max(low, Float(-z)), hi = min(high, Float(255 - z))
        var ops: [Int8PostOp] = []
        // The u8 conversion saturates to [-z, 255 - z] anyway; a tighter bound (an activation) is kept.
        if lo > Float(-z) + 1e-3 || hi < Float(255 - z) - 1e-3 { ops.append(.clip(lo, hi)) }
        if z != 0 { ops += [.round, .linear(1, Float(z))] }
        return ops
    }

    /// Activation bounds (Relu, Clip) of `postOps` in units of `scale` (real / scale).
    private func bounds(_ postOps: ArraySlice<PostOp>, scale: Float) -> (Float, Float) {
        var lo = -Float.greatestFiniteMagnitude, hi = Float.greatestFiniteMagnitude
        for case let .eltwise(alg, a, b) in postOps {
            if alg == dnnl_eltwise_relu { lo = max(lo, 0) } else { lo = max(lo, a / scale); hi = min(hi, b / scale) }
        }
        return (lo, hi)
    }

    /// A convolution's or inner product's bias in accumulator units (oneDNN 2.6 adds it before
    /// the output scales): the QDQ model's int32 values when its scale is `srcScale * weightScale`
    /// (what quantizers write, and what onnxruntime adds as integers), else the float bias over
    /// that scale; halved with the weights; less `sourceZeroPoint * sum(weights)` per output
    /// channel when the source zero point is folded here rather than given to oneDNN.
    private func int8Bias(_ bias: Tensor?, node: Node, model: Model, srcScale: Float, weightScales sw: [Float], halved: Bool,
                          sourceZeroPoint: Int, weights wq: [Int32], outputs oc: Int, layer: String,
                          integerBias: Bool = true) throws -> [Float] {
        let perOC = wq.count / oc
        let quantized = integerBias && node.inputs.count > 2 ? model.graph.quantization.weights[node.inputs[2]] : nil
        var b = [Float](repeating: 0, count: oc)
        for o in 0..<oc {
            var acc: Double = 0
            if let q = quantized, q.params.bits == 32, q.values.count == oc,
               case let s = q.params.scales[q.params.perTensor ? 0 : o], abs(Double(s) / (Double(srcScale) * Double(sw[o])) - 1) < 1e-4 {
                acc = Double(q.values[o])
            } else if let bias {
                acc = Double(bias.data[o]) / (Double(srcScale) * Double(sw[o]))
            }
            if halved { acc /= 2 }
            if sourceZeroPoint != 0 {
                var sum = 0
                for k in 0..<perOC { sum += Int(wq[o * perOC + k]) }
                acc -= Double(sourceZeroPoint * sum)
            }
            b[o] = Float(acc)
        }
        return b
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
            let perOC = weight.count / oc
            // Without VNNI, weights that could saturate int16 pair sums are halved (7 bits, the
            // output scale doubled to match); a depthwise kernel multiplies without pairing.
            let depthwiseKernel = a.groups > 1 && weight.shape[1] == 1
            let halve = plan.pairSums16 && !depthwiseKernel && !int8PairsFitInt16(qw.values, outputs: oc, perOutput: perOC)
            let wq = halve ? qw.values.map { Int32((Float($0) / 2).rounded(.toNearestOrEven)) } : qw.values
            if halve { halvedLayers.append(name) }
            let sw0 = try weightScales(qw, outputs: oc, axis: 0, name)
            let sw = sw0.map { halve ? 2 * $0 : $0 }
            let dst = try storage(output, name, model: model, lowered: lowered)
            let res = try residual.map { try storage($0, name, model: model, lowered: lowered) }
            if let r = residual, res!.type != dst.type {
                throw failure(name, "residual '\(r)' and the output are stored in different 8-bit types")
            }
            // The convolution's own result: before a residual Add it has its own QDQ pair, and
            // onnxruntime rounds to it before adding (QLinearConv, then QLinearAdd).
            let own = residual == nil ? dst : try? storage(node.outputs[0], name, model: model, lowered: lowered)
            let padded = (a.padsBegin + a.padsEnd).contains { $0 > 0 }
            // Output scales take the accumulator to `own`'s steps (or dst's, when the result has
            // no QDQ pair of its own); the bias is in accumulator units, as oneDNN 2.6 adds it
            // before the output scales.
            let stepScale = own?.scale ?? dst.scale
            let m = sw.map { src.scale * $0 / stepScale }
            let b = try int8Bias(bias, node: node, model: model, srcScale: src.scale, weightScales: sw0, halved: halve,
                                 sourceZeroPoint: padded ? 0 : src.zeroPoint, weights: wq, outputs: oc, layer: name)
            let sumAt = postOps.firstIndex(of: .sum) ?? postOps.endIndex
            if postOps.contains(where: { if case .depthwise = $0 { return true }; return false }) {
                throw failure(name, "fused depthwise post-op in int8")
            }
            var ops: [Int8PostOp] = []
            if let res {
                // dst = round(own_s / dst_s * (own - own_z) + res_s / dst_s * (res - res_z) + dst_z):
                // the zero point goes in before the final rounding, as in MLAS's QLinearAdd (fixed
                // point there, so the two can differ by a step near ties). A second round + linear
                // after the sum cannot be had: oneDNN 2.6's jit kernels give every eltwise post-op
                // of one kind the first one's parameters (measured on avx2: every output 0).
                let ratio = res.scale / dst.scale
                let shift = Float(dst.zeroPoint) - ratio * Float(res.zeroPoint)
                let (lo, hi) = bounds(postOps[..<sumAt], scale: stepScale)
                if let own {
                    // The result as onnxruntime stores it, less its zero point: saturate, round.
                    let z = Float(own.zeroPoint)
                    ops += [.clip(max(lo, -z), min(hi, 255 - z)), .round, .linear(own.scale / dst.scale, shift)]
                } else {
                    if lo > -.greatestFiniteMagnitude || hi < .greatestFiniteMagnitude { ops.append(.clip(lo, hi)) }
                    ops.append(.linear(1, shift))
                }
                ops.append(.sum(ratio, res.type))
                // Activations after the Add, bounds in dst's steps with its zero point.
                let (lo2, hi2) = bounds(postOps[(sumAt + 1)...], scale: dst.scale)
                let z = Float(dst.zeroPoint)
                if lo2 + z > 1e-3 || hi2 + z < 255 - 1e-3 { ops.append(.clip(max(lo2 + z, 0), min(hi2 + z, 255))) }
            } else {
                let (lo, hi) = bounds(postOps[...], scale: dst.scale)
                ops += requantize(zeroPoint: dst.zeroPoint, low: lo, high: hi)
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
            var d = try residual.map { descs[$0]! } ?? MD.make([batch, oc, oh, ow], dst.type, int8Tag)
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
                                          tensor: Tensor(shape: weight.shape, data: wq.map(Float.init)),
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
            var args = [(Arg.src, srcMem), (Arg.weights, wMem), (Arg.bias, bMem), (Arg.dst, dstMem)]
            if srcZero != 0 { args.append((Arg.zeroPoints | Arg.src, try int8ZeroPointArgument(srcZero))) }
            steps.append(try makeStep(prim, args, layer: name))

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
                // Quantize the float input as QuantizeLinear does (and onnxruntime's MLAS):
                // x / scale (a division, not a product with 1 / scale: inputs such as
                // p / 127.5 - 1 sit on rounding ties, which the two break differently), clamp to
                // the integer range less the zero point, round half to even, then add the zero
                // point (adding it before rounding moves ties when it is odd, and in f32 makes
                // new ones). A binary division into u8 in the input's layout, then a copy into
                // the network's.
                let v = try storage(output, name, model: model, lowered: lowered)
                var d0 = have, plainU8 = try MD.make(have.dimensions, v.type, MD.plain(Int(have.ndims)))
                var d1 = try MD.make([Int](repeating: 1, count: Int(have.ndims)), dnnl_f32, MD.plain(Int(have.ndims)))
                var op = dnnl_binary_desc_t()
                try dnnl(dnnl_binary_desc_init(&op, dnnl_binary_div, &d0, &d1, &plainU8), "describe quantization")
                let z = Float(v.zeroPoint)
                let attrs = try int8Attributes(scales: nil, postOps: [.clip(-z, 255 - z), .round, .linear(1, z)])
                let prim = try Primitive(opDesc: &op, attributes: attrs, context: context, what: "quantization")
                let scale = try weights.memory(name + "/scale", desc: d1, tensor: Tensor(shape: d1.dimensions, data: [v.scale]),
                                               plainDims: d1.dimensions, context: context)
                let want = try MD.make(have.dimensions, v.type, int8Tag)
                let quantized = try allocate(output + "#plain", plainU8)
                steps.append(try makeStep(prim, [(Arg.src, memories[input]!), (Arg.src1, scale), (Arg.dst, quantized)],
                                          layer: name + " (quantize)"))
                let dst = try allocate(output, want)
                steps.append(try makeStep(Primitive(reorderFrom: plainU8, to: want, context: context),
                                          [(Arg.from, quantized), (Arg.to, dst)], layer: name + " (quantize)"))
                if let slot = slotOf.removeValue(forKey: output + "#plain") { freeSlots.append(slot) }
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
            var s = desc0, d = try MD.make([batch, dims[1], oh, ow], dst.type, int8Tag)
            var op = dnnl_pooling_v2_desc_t()
            func pad(_ v: [Int]) -> [Int64] { v.map(Int64.init) + [Int64](repeating: 0, count: 12 - v.count) }
            var st = pad(strides), k = pad(kernel), dil = pad([0, 0]), l = pad(pb), r = pad(pe)
            let alg = attrs?.countIncludePad == true ? dnnl_pooling_avg_include_padding : dnnl_pooling_avg_exclude_padding
            try dnnl(dnnl_pooling_v2_forward_desc_init(&op, dnnl_forward_inference, alg, &s, &d, &st, &k, &dil, &l, &r),
                     "describe int8 average pooling")
            // y = round(s_x / s_y * (mean(x) - z_x)) + z_y (QLinearGlobalAveragePool / QLinearAveragePool),
            // here round(s_x / s_y * (mean(x) - z_x) + z_y): one linear post-op. oneDNN 2.6's jit
            // kernels give every eltwise post-op of one kind the first one's parameters (measured:
            // linear, round, linear scaled twice), so "round, then add z_y" cannot follow a linear.
            let ratio = src.scale / dst.scale
            let pa = try int8Attributes(scales: nil, postOps: [.linear(ratio, Float(dst.zeroPoint) - ratio * Float(src.zeroPoint))])
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
            var alpha: Float = 1, beta: Float = 1, outAxis = 1
            if case let .gemm(g) = node.op { alpha = g.alpha; beta = g.beta; outAxis = g.transB ? 0 : 1 }
            let sw0 = try weightScales(qw, outputs: oc, axis: outAxis, name).map { $0 * alpha }
            // The integer weights in [oc, k] order, halved where pair sums could saturate (as for conv).
            var ints = [Int32](repeating: 0, count: weight.count)
            for o in 0..<oc { for j in 0..<k { ints[o * k + j] = Int32((weight.data[o * k + j] / sw0[o]).rounded(.toNearestOrEven)) } }
            let halve = plan.pairSums16 && !int8PairsFitInt16(ints, outputs: oc, perOutput: k)
            if halve {
                ints = ints.map { Int32((Float($0) / 2).rounded(.toNearestOrEven)) }
                halvedLayers.append(name)
            }
            let sw = sw0.map { halve ? 2 * $0 : $0 }
            let dst: Int8Value? = model.graph.quantization.activations[output] == nil ? nil
                : try storage(output, name, model: model, lowered: lowered)
            let m = sw.map { src.scale * $0 / (dst?.scale ?? 1) }
            let q = ints.map(Float.init)
            // The Gemm's C is the lowered bias times beta: its integer form holds only when alpha = beta = 1.
            let b = try int8Bias(bias, node: node, model: model, srcScale: src.scale, weightScales: sw0, halved: halve,
                                 sourceZeroPoint: src.zeroPoint, weights: ints, outputs: oc, layer: name,
                                 integerBias: alpha == 1 && beta == 1)
            let postOps = dst.map { requantize(zeroPoint: $0.zeroPoint) } ?? []
            let dims = descs[input]!.dimensions
            let wDims = [oc] + Array(dims.dropFirst())
            var s = descs[input]!
            var w = try MD.make(wDims, dnnl_s8, dnnl_format_tag_any)
            var bd = try MD.make([oc], dnnl_f32, dnnl_x)
            var d = try MD.make([batch, oc], dst?.type ?? dnnl_f32, dnnl_nc)
            var op = dnnl_inner_product_desc_t()
            try dnnl(dnnl_inner_product_forward_desc_init(&op, dnnl_forward_inference, &s, &w, &bd, &d), "describe int8 inner product")
            let prim = try Primitive(opDesc: &op, attributes: int8Attributes(scales: m, postOps: postOps), context: context,
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

    /// A one-value s32 memory holding a run-time zero point (kept alive by the network).
    private func int8ZeroPointArgument(_ z: Int32) throws -> Memory {
        let m = try Memory(try MD.make([1], dnnl_s32, dnnl_x), context, allocate: true)
        m.pointer!.storeBytes(of: z, as: Int32.self)
        int8Constants.append(m)
        return m
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
