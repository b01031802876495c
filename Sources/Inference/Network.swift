// One compiled network for one batch size: oneDNN primitives, their arguments and the memory
// plan. Built once per batch size by `Engine` and cached; running it allocates nothing.
import CDNNL

/// A primitive with its prebuilt argument list.
struct Step {
    let primitive: Primitive
    var args: ContiguousArray<dnnl_exec_arg_t>
    let layer: String
}

/// Activation buffers shared by every network of one engine: numbered slots that only grow.
final class Arena {
    private(set) var slots: [(pointer: UnsafeMutableRawPointer, size: Int)] = []
    /// Bumped whenever a slot moves, so networks rebind their memories.
    private(set) var generation = 0

    func ensure(_ slot: Int, size: Int) {
        while slots.count <= slot { slots.append((UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64), 64)) }
        if slots[slot].size < size {
            slots[slot].pointer.deallocate()
            slots[slot] = (UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64), size)
            generation += 1
        }
    }

    deinit { for s in slots { s.pointer.deallocate() } }
}

/// Weights reordered to the layout a primitive chose, kept across batch sizes.
final class WeightCache {
    private var entries: [String: [Memory]] = [:]

    /// The weights of `key` in layout `desc`, reordering `tensor` (plain layout `plainDims`) on first use.
    func memory(_ key: String, desc: dnnl_memory_desc_t, tensor: Tensor, plainDims: [Int], context: DNNLContext) throws -> Memory {
        if let hit = entries[key]?.first(where: { MD.equal($0.desc, desc) }) { return hit }
        let plain = try MD.make(plainDims, dnnl_f32, MD.plain(plainDims.count))
        let source = try Memory(plain, context, allocate: true)
        tensor.data.withUnsafeBytes { raw in source.pointer!.copyMemory(from: raw.baseAddress!, byteCount: raw.count) }
        let target = try Memory(desc, context, allocate: true)
        let reorder = try Primitive(reorderFrom: plain, to: desc, context: context)
        var args = [dnnl_exec_arg_t(arg: Arg.from, memory: source.handle), dnnl_exec_arg_t(arg: Arg.to, memory: target.handle)]
        // int8 weights with s8s8 compensation need a scratchpad for the reorder.
        let scratch = MD.size(reorder.query(dnnl_query_scratchpad_md)) > 0
            ? try Memory(reorder.query(dnnl_query_scratchpad_md), context, allocate: true) : nil
        if let scratch { args.append(dnnl_exec_arg_t(arg: Arg.scratchpad, memory: scratch.handle)) }
        try dnnl(dnnl_primitive_execute(reorder.handle, context.stream, Int32(args.count), &args), "reorder weights")
        try context.wait()
        entries[key, default: []].append(target)
        return target
    }
}

/// The compiled network for one batch size.
final class Network {
    let batch: Int
    var steps: [Step] = []
    /// Memories pointing into arena slots (slot -1: scratchpad slot index is `scratchSlot`).
    private var bound: [(memory: Memory, slot: Int)] = []
    private var owned: [Memory] = []
    private var generation = -1
    let input: Memory
    private(set) var embedding: Memory!
    private(set) var logits: Memory?
    /// Reorders that copy the embedding / logits into the caller's buffers (run only when requested).
    private(set) var embeddingStep: Step!
    private(set) var logitsStep: Step?
    /// Number of activation reorders between layers (0 when formats are consistent).
    private(set) var interLayerReorders = 0

    let context: DNNLContext
    /// The formats chosen for this precision on this CPU (FormatPlan's table).
    let plan: FormatPlan
    /// int8 only: how each activation is stored (Network+Int8.swift).
    var int8Values: [String: Int8Value] = [:]
    /// int8 only: layers run with halved (7-bit) weights because int16 pair sums could saturate.
    var halvedLayers: [String] = []
    /// int8 only: run-time zero-point memories the steps' arguments point to.
    var int8Constants: [Memory] = []
    let sourceName: String

    // Compile-time state.
    var descs: [String: dnnl_memory_desc_t] = [:]
    var memories: [String: Memory] = [:]
    var slotOf: [String: Int] = [:]
    var freeSlots: [Int] = []
    private var slotSizes: [Int] = []
    private var scratchSize = 0
    private var scratchMemories: [Memory] = []

    init(model: Model, lowered: LoweredGraph, batch: Int, plan: FormatPlan, context: DNNLContext,
         weights: WeightCache, arena: Arena) throws {
        self.batch = batch
        self.context = context
        self.plan = plan
        sourceName = model.source
        let dt = plan.dataType.dnnl

        // The caller's input, f32 plain (NCHW for images), bound at run time.
        let inputDesc = try MD.make([batch] + model.inputShape, dnnl_f32, MD.plain(model.inputShape.count + 1))
        input = try Memory(inputDesc, context, allocate: false)
        inputName = model.inputName
        constants = lowered.constants
        descs[model.inputName] = inputDesc
        memories[model.inputName] = input

        // Last layer index reading each physical value; outputs live to the end.
        var lastUse: [String: Int] = [:]
        for (i, layer) in lowered.layers.enumerated() { for v in layer.inputs { lastUse[v] = i } }
        let keep = Set([lowered.physical(model.embeddingOutput)] + (model.logitsOutput.map { [lowered.physical($0)] } ?? []))
        for v in keep { lastUse[v] = Int.max }

        for (i, layer) in lowered.layers.enumerated() {
            do {
                if plan.dataType == .int8 {
                    try compileInt8(layer, index: i, model: model, lowered: lowered, lastUse: lastUse, weights: weights)
                } else {
                    try compile(layer, index: i, dt: dt, lastUse: lastUse, weights: weights)
                }
            } catch let failure as DNNLFailure {
                throw InferenceError(source: model.source, node: layer.name, op: "oneDNN", reason: failure.description)
            }
            // Release buffers whose last reader was this layer.
            for v in Set(layer.inputs) where lastUse[v] == i && v != layer.output {
                if let s = slotOf.removeValue(forKey: v), !slotOf.values.contains(s) { freeSlots.append(s) }
            }
        }

        // Copies into the caller's f32 buffers (plain NCHW / NC).
        func output(_ name: String) throws -> (Memory, Step) {
            let phys = lowered.physical(name)
            let src = descs[phys]!
            let dst = try MD.make(src.dimensions, dnnl_f32, MD.plain(Int(src.ndims)))
            let mem = try Memory(dst, context, allocate: false)
            let step = try makeStep(Primitive(reorderFrom: src, to: dst, context: context, attributes: int8OutputAttributes(phys)),
                                    [(Arg.from, memories[phys]!), (Arg.to, mem)], layer: "output \(name)")
            return (mem, step)
        }
        do {
            (embedding, embeddingStep) = try output(model.embeddingOutput)
            if let l = model.logitsOutput { let (m, s) = try output(l); logits = m; logitsStep = s } else { logits = nil }
        } catch let failure as DNNLFailure {
            throw InferenceError(source: model.source, node: "outputs", op: "oneDNN", reason: failure.description)
        }
        for (s, size) in slotSizes.enumerated() { arena.ensure(s, size: size) }
        arena.ensure(slotSizes.count, size: max(scratchSize, 64))
        scratchSlot = slotSizes.count
        for m in scratchMemories { bound.append((m, scratchSlot)) }
        try rebind(arena)
    }

    private var scratchSlot = 0
    private let inputName: String
    private let constants: [String: Tensor]

    /// Re-points slot memories after the arena grew (no-op when unchanged).
    func rebind(_ arena: Arena) throws {
        guard generation != arena.generation else { return }
        for (memory, slot) in bound { try memory.bind(arena.slots[slot].pointer) }
        generation = arena.generation
    }

    // MARK: - Compilation

    func makeStep(_ p: Primitive, _ args: [(Int32, Memory)], layer: String) throws -> Step {
        var list = ContiguousArray(args.map { dnnl_exec_arg_t(arg: $0.0, memory: $0.1.handle) })
        let scratch = p.query(dnnl_query_scratchpad_md)
        if MD.size(scratch) > 0 {
            scratchSize = max(scratchSize, MD.size(scratch))
            let m = try Memory(scratch, context, allocate: false)
            scratchMemories.append(m)
            list.append(dnnl_exec_arg_t(arg: Arg.scratchpad, memory: m.handle))
        }
        return Step(primitive: p, args: list, layer: layer)
    }

    /// A fresh activation memory for `value` in a free (or new) arena slot.
    func allocate(_ value: String, _ desc: dnnl_memory_desc_t, reuse slot: Int? = nil) throws -> Memory {
        let s = slot ?? (freeSlots.popLast() ?? { slotSizes.append(0); return slotSizes.count - 1 }())
        slotSizes[s] = max(slotSizes[s], MD.size(desc))
        let m = try Memory(desc, context, allocate: false)
        bound.append((m, s))
        slotOf[value] = s
        descs[value] = desc
        memories[value] = m
        return m
    }

    /// `value`'s memory in layout `desc`, adding a reorder step when it differs from the stored one.
    func source(_ value: String, as desc: dnnl_memory_desc_t, layer: String) throws -> Memory {
        let have = descs[value]!
        if MD.equal(have, desc) { return memories[value]! }
        let tmp = try allocate("\(value)#\(steps.count)", desc)
        steps.append(try makeStep(Primitive(reorderFrom: have, to: desc, context: context),
                                  [(Arg.from, memories[value]!), (Arg.to, tmp)], layer: layer + " (reorder)"))
        if value != inputName { interLayerReorders += 1 }
        // The temporary lives only until this layer's primitive ran.
        pendingTemporaries.append("\(value)#\(steps.count - 1)")
        return tmp
    }
    private var pendingTemporaries: [String] = []

    func releaseTemporaries() {
        for t in pendingTemporaries { if let s = slotOf.removeValue(forKey: t) { freeSlots.append(s) } }
        pendingTemporaries.removeAll()
    }

    /// A desc with the same dims as `value`'s but the compute type, format left to oneDNN.
    private func any(_ dims: [Int], _ dt: dnnl_data_type_t) throws -> dnnl_memory_desc_t {
        try MD.make(dims, dt, dnnl_format_tag_any)
    }

    private func compile(_ layer: Layer, index: Int, dt: dnnl_data_type_t, lastUse: [String: Int], weights: WeightCache) throws {
        defer { releaseTemporaries() }
        switch layer {
        case let .conv(name, a, weight, bias, input, output, postOps, residual, depthwise):
            var fusedPostOps = postOps
            if let dw = depthwise {
                fusedPostOps += [.depthwise(dt, dw.bias != nil, dw.attrs.strides[0], dw.attrs.padsBegin[0])] + dw.postOps
            }
            let src = descs[input]!
            let dims = src.dimensions
            let oc = weight.shape[0]
            let oh = (dims[2] + a.padsBegin[0] + a.padsEnd[0] - (a.dilations[0] * (a.kernel[0] - 1) + 1)) / a.strides[0] + 1
            let ow = (dims[3] + a.padsBegin[1] + a.padsEnd[1] - (a.dilations[1] * (a.kernel[1] - 1) + 1)) / a.strides[1] + 1
            let dstDims = [batch, oc, oh, ow]
            let grouped = a.groups > 1
            let wDims = grouped ? [a.groups, oc / a.groups, weight.shape[1], a.kernel[0], a.kernel[1]] : weight.shape
            var dstWant: dnnl_memory_desc_t
            if let r = residual, descs[r]!.data_type == dt {
                dstWant = descs[r]!
            } else {
                dstWant = try plan.activations.tag.map { try MD.make(dstDims, dt, $0) } ?? any(dstDims, dt)
            }
            let attrs = try PrimitiveAttributes(postOps: fusedPostOps)
            func create(_ srcWant: dnnl_memory_desc_t) throws -> Primitive {
                var s = srcWant, w = try any(wDims, dt), d = dstWant
                var b = try MD.make([oc], dnnl_f32, dnnl_x)
                var desc = dnnl_convolution_desc_t()
                var strides = a.strides.map(Int64.init) + [Int64](repeating: 0, count: 10)
                var dil = a.dilations.map { Int64($0 - 1) } + [Int64](repeating: 0, count: 10)
                var pl = a.padsBegin.map(Int64.init) + [Int64](repeating: 0, count: 10)
                var pr = a.padsEnd.map(Int64.init) + [Int64](repeating: 0, count: 10)
                let status = bias == nil
                    ? dnnl_dilated_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct,
                                                                 &s, &w, nil, &d, &strides, &dil, &pl, &pr)
                    : dnnl_dilated_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct,
                                                                 &s, &w, &b, &d, &strides, &dil, &pl, &pr)
                try dnnl(status, "describe convolution")
                return try Primitive(opDesc: &desc, attributes: attrs, context: context, what: "convolution")
            }
            let prim: Primitive
            if let dw = depthwise {
                // Fused 1x1 + depthwise: only worth it when oneDNN has a real fused kernel (not
                // "ref_fused_convolution", two primitives back to back); otherwise run them apart.
                guard plan.fuseDepthwise, src.data_type == dt, let p = try? create(src), !p.implementation.contains("ref") else {
                    var uses = lastUse
                    uses[dw.intermediate] = index
                    try compile(.conv(name: name, attrs: a, weight: weight, bias: bias, input: input, output: dw.intermediate,
                                      postOps: postOps, residual: nil), index: index, dt: dt, lastUse: uses, weights: weights)
                    try compile(.conv(name: dw.name, attrs: dw.attrs, weight: dw.weight, bias: dw.bias, input: dw.intermediate,
                                      output: output, postOps: dw.postOps, residual: nil), index: index, dt: dt, lastUse: uses,
                                weights: weights)
                    if let slot = slotOf.removeValue(forKey: dw.intermediate) { freeSlots.append(slot) }
                    return
                }
                prim = p
            } else if src.data_type == dt, let p = try? create(src) {
                prim = p
            } else {
                prim = try create(try any(dims, dt))
            }
            let srcMem = try source(input, as: prim.query(dnnl_query_src_md), layer: name)
            let wMem = try weights.memory(name + "/weight", desc: prim.query(dnnl_query_weights_md), tensor: weight,
                                          plainDims: wDims, context: context)
            let dstDesc = depthwise == nil ? prim.query(dnnl_query_dst_md) : prim.query(dnnl_query_exec_arg_md, index: Arg.dst)
            var dstMem: Memory
            if let r = residual {
                // Sum post-op: the destination must already hold the residual.
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
            var args: [(Int32, Memory)] = [(Arg.src, srcMem), (Arg.weights, wMem), (Arg.dst, dstMem)]
            if let bias {
                args.append((Arg.bias, try weights.memory(name + "/bias", desc: prim.query(dnnl_query_weights_md, index: 1),
                                                          tensor: bias, plainDims: [oc], context: context)))
            }
            if let dw = depthwise {
                let c = dw.weight.shape[0]
                args.append((Arg.postOpDepthwise | Arg.weights,
                             try weights.memory(dw.name + "/fused weight",
                                                desc: prim.query(dnnl_query_exec_arg_md, index: Arg.postOpDepthwise | Arg.weights),
                                                tensor: dw.weight, plainDims: [c, 1, 1, 3, 3], context: context)))
                if let b = dw.bias {
                    args.append((Arg.postOpDepthwise | Arg.bias,
                                 try weights.memory(dw.name + "/fused bias",
                                                    desc: prim.query(dnnl_query_exec_arg_md, index: Arg.postOpDepthwise | Arg.bias),
                                                    tensor: b, plainDims: [c], context: context)))
                }
            }
            steps.append(try makeStep(prim, args, layer: depthwise.map { "\(name) + \($0.name)" } ?? name))

        case let .eltwise(name, alg, alpha, beta, input, output):
            let desc = descs[input]!
            var d = desc
            var op = dnnl_eltwise_desc_t()
            try dnnl(dnnl_eltwise_forward_desc_init(&op, dnnl_forward_inference, alg, &d, alpha, beta), "describe eltwise")
            let prim = try Primitive(opDesc: &op, attributes: PrimitiveAttributes(), context: context, what: "eltwise")
            let dst = lastUse[input] == index ? try allocate(output, desc, reuse: slotOf[input]) : try allocate(output, desc)
            steps.append(try makeStep(prim, [(Arg.src, memories[input]!), (Arg.dst, dst)], layer: name))

        case let .add(name, a, b, output):
            var d0 = descs[a]!, dd = descs[a]!
            var d1: dnnl_memory_desc_t
            let src1: Memory
            if let c = constants[b] {   // a constant operand (dimensions of 1 broadcast)
                d1 = try MD.make(c.shape, dnnl_f32, MD.plain(c.shape.count))
                src1 = try weights.memory(name + "/constant", desc: d1, tensor: c, plainDims: c.shape, context: context)
            } else {
                d1 = descs[b]!
                src1 = memories[b]!
            }
            var op = dnnl_binary_desc_t()
            try dnnl(dnnl_binary_desc_init(&op, dnnl_binary_add, &d0, &d1, &dd), "describe add")
            let prim = try Primitive(opDesc: &op, attributes: PrimitiveAttributes(), context: context, what: "add")
            let dst = lastUse[a] == index && a != b ? try allocate(output, dd, reuse: slotOf[a]) : try allocate(output, dd)
            steps.append(try makeStep(prim, [(Arg.src, memories[a]!), (Arg.src1, src1), (Arg.dst, dst)], layer: name))

        case let .pool(name, attrs, input, output):
            let src = descs[input]!
            let dims = src.dimensions
            let kernel = attrs?.kernel ?? [dims[2], dims[3]]
            let strides = attrs?.strides ?? [1, 1]
            let pb = attrs?.padsBegin ?? [0, 0], pe = attrs?.padsEnd ?? [0, 0]
            let oh = (dims[2] + pb[0] + pe[0] - kernel[0]) / strides[0] + 1
            let ow = (dims[3] + pb[1] + pe[1] - kernel[1]) / strides[1] + 1
            var s = src, d = try any([batch, dims[1], oh, ow], src.data_type)
            var op = dnnl_pooling_v2_desc_t()
            func pad(_ v: [Int]) -> [Int64] { v.map(Int64.init) + [Int64](repeating: 0, count: 12 - v.count) }
            var st = pad(strides), k = pad(kernel), dil = pad([0, 0]), l = pad(pb), r = pad(pe)
            let alg = attrs?.countIncludePad == true ? dnnl_pooling_avg_include_padding : dnnl_pooling_avg_exclude_padding
            try dnnl(dnnl_pooling_v2_forward_desc_init(&op, dnnl_forward_inference, alg, &s, &d, &st, &k, &dil, &l, &r),
                     "describe average pooling")
            let prim = try Primitive(opDesc: &op, attributes: PrimitiveAttributes(), context: context, what: "pooling")
            let dst = try allocate(output, prim.query(dnnl_query_dst_md))
            steps.append(try makeStep(prim, [(Arg.src, memories[input]!), (Arg.dst, dst)], layer: name))

        case let .innerProduct(name, weight, bias, input, output):
            let src = descs[input]!
            let dims = src.dimensions
            let oc = weight.shape[0]
            let inner = Array(dims.dropFirst())
            precondition(inner.reduce(1, *) == weight.shape[1], "inner product input \(dims) vs weight \(weight.shape)")
            let wDims = [oc] + inner
            var s = src.data_type == dt ? src : try any(dims, dt)
            var w = try any(wDims, dt)
            var b = try MD.make([oc], dnnl_f32, dnnl_x)
            var d = try MD.make([batch, oc], dnnl_f32, dnnl_nc)
            var op = dnnl_inner_product_desc_t()
            let status = bias == nil
                ? dnnl_inner_product_forward_desc_init(&op, dnnl_forward_inference, &s, &w, nil, &d)
                : dnnl_inner_product_forward_desc_init(&op, dnnl_forward_inference, &s, &w, &b, &d)
            try dnnl(status, "describe inner product")
            let prim = try Primitive(opDesc: &op, attributes: PrimitiveAttributes(), context: context, what: "inner product")
            let srcMem = try source(input, as: prim.query(dnnl_query_src_md), layer: name)
            let wMem = try weights.memory(name + "/weight", desc: prim.query(dnnl_query_weights_md), tensor: weight,
                                          plainDims: wDims, context: context)
            let dst = try allocate(output, prim.query(dnnl_query_dst_md))
            var args: [(Int32, Memory)] = [(Arg.src, srcMem), (Arg.weights, wMem), (Arg.dst, dst)]
            if let bias {
                args.append((Arg.bias, try weights.memory(name + "/bias", desc: b, tensor: bias, plainDims: [oc], context: context)))
            }
            steps.append(try makeStep(prim, args, layer: name))
        }
    }
}
