// Thin owners of oneDNN C API handles (dnnl.h, oneDNN 2.6). Each class owns one handle kind and
// frees it in deinit; `dnnl(_:_:)` is the single status check.
import CDNNL

/// A failed oneDNN call: the operation and the status name; `Engine` adds the model and node.
struct DNNLFailure: Error, CustomStringConvertible {
    var status: dnnl_status_t
    var operation: String
    var description: String {
        let name: String
        switch status {
        case dnnl_out_of_memory: name = "out of memory"
        case dnnl_invalid_arguments: name = "invalid arguments"
        case dnnl_unimplemented: name = "no implementation for these shapes/formats on this CPU"
        case dnnl_runtime_error: name = "runtime error"
        default: name = "status \(status.rawValue)"
        }
        return "could not \(operation): \(name)"
    }
}

/// Throws `DNNLFailure` unless `status` is `dnnl_success`.
@inline(__always)
func dnnl(_ status: dnnl_status_t, _ operation: @autoclosure () -> String) throws {
    if status != dnnl_success { throw DNNLFailure(status: status, operation: operation()) }
}

/// oneDNN execution argument indices (macros in dnnl_types.h).
enum Arg {
    static let src: Int32 = 1, src1: Int32 = 2, dst: Int32 = 17, weights: Int32 = 33, bias: Int32 = 41
    static let scratchpad: Int32 = 80, from: Int32 = 1, to: Int32 = 17
    static let postOpDepthwise: Int32 = 8192
    /// DNNL_ARG_ATTR_ZERO_POINTS, or-ed with the argument the zero point belongs to.
    static let zeroPoints: Int32 = 4096
}

/// A CPU engine and an in-order stream (`dnnl_engine_create`, `dnnl_stream_create`).
final class DNNLContext {
    let engine: dnnl_engine_t
    let stream: dnnl_stream_t

    init() throws {
        var e: dnnl_engine_t?
        try dnnl(dnnl_engine_create(&e, dnnl_cpu, 0), "create CPU engine")
        var s: dnnl_stream_t?
        do { try dnnl(dnnl_stream_create(&s, e, UInt32(dnnl_stream_default_flags.rawValue)), "create stream") } catch {
            dnnl_engine_destroy(e); throw error
        }
        engine = e!
        stream = s!
    }

    /// Waits for queued primitives (`dnnl_stream_wait`).
    func wait() throws { try dnnl(dnnl_stream_wait(stream), "wait for the stream") }

    deinit {
        dnnl_stream_destroy(stream)
        dnnl_engine_destroy(engine)
    }
}

/// A memory object (`dnnl_memory_create`); either owns its buffer (oneDNN allocates it) or points
/// at a buffer bound later with `bind` (`dnnl_memory_set_data_handle`).
final class Memory {
    let handle: dnnl_memory_t
    let desc: dnnl_memory_desc_t
    private let context: DNNLContext   // the engine must outlive its memories

    /// Memory with a oneDNN-allocated buffer when `allocate`, else with no buffer until `bind`.
    init(_ desc: dnnl_memory_desc_t, _ context: DNNLContext, allocate: Bool) throws {
        var d = desc
        var m: dnnl_memory_t?
        try dnnl(dnnl_memory_create(&m, &d, context.engine, allocate ? UnsafeMutableRawPointer(bitPattern: -1) : nil),
                 "create memory")
        handle = m!
        self.desc = desc
        self.context = context
    }

    /// Points the memory at `pointer` (`dnnl_memory_set_data_handle`).
    func bind(_ pointer: UnsafeMutableRawPointer?) throws {
        try dnnl(dnnl_memory_set_data_handle(handle, pointer), "set memory buffer")
    }

    /// The buffer (`dnnl_memory_get_data_handle`).
    var pointer: UnsafeMutableRawPointer? {
        var p: UnsafeMutableRawPointer?
        dnnl_memory_get_data_handle(handle, &p)
        return p
    }

    deinit { dnnl_memory_destroy(handle) }
}

/// Primitive attributes with optional post-ops (`dnnl_primitive_attr_create`, `dnnl_post_ops_*`).
final class PrimitiveAttributes {
    let handle: dnnl_primitive_attr_t

    /// PrimitiveAttributes with a user-managed scratchpad and the given post-ops.
    init(postOps: [PostOp] = []) throws {
        var a: dnnl_primitive_attr_t?
        try dnnl(dnnl_primitive_attr_create(&a), "create primitive attributes")
        handle = a!
        try dnnl(dnnl_primitive_attr_set_scratchpad_mode(handle, dnnl_scratchpad_mode_user), "set scratchpad mode")
        guard !postOps.isEmpty else { return }
        var p: dnnl_post_ops_t?
        try dnnl(dnnl_post_ops_create(&p), "create post-ops")
        defer { dnnl_post_ops_destroy(p) }
        for op in postOps {
            switch op {
            case .sum: try dnnl(dnnl_post_ops_append_sum(p, 1), "append sum post-op")
            case let .depthwise(type, bias, stride, padding):
                try dnnl(dnnl_post_ops_append_dw(p, type, bias ? dnnl_f32 : dnnl_data_type_undef, type, 3, Int64(stride),
                                                 Int64(padding), 0, 0, nil), "append depthwise post-op")
            case let .eltwise(alg, alpha, beta):
                try dnnl(dnnl_post_ops_append_eltwise(p, 1, alg, alpha, beta), "append eltwise post-op")
            }
        }
        try dnnl(dnnl_primitive_attr_set_post_ops(handle, p), "set post-ops")
    }

    deinit { dnnl_primitive_attr_destroy(handle) }
}

/// A fused operation applied to a primitive's result.
enum PostOp: Equatable {
    /// `dst = alg(dst)`, e.g. relu or clip_v2(min, max).
    case eltwise(dnnl_alg_kind_t, Float, Float)
    /// `dst = result + dst` (the residual already in the destination buffer).
    case sum
    /// A fused 3x3 depthwise convolution (`dnnl_post_ops_append_dw`): data type, has bias, stride, left padding.
    case depthwise(dnnl_data_type_t, Bool, Int, Int)
}

/// A primitive and its descriptor (`dnnl_primitive_desc_create`, `dnnl_primitive_create`).
final class Primitive {
    let desc: dnnl_primitive_desc_t
    let handle: dnnl_primitive_t
    private let context: DNNLContext   // the engine must outlive its primitives

    /// Creates a primitive from an op descriptor (`dnnl_*_desc_init` output).
    init(opDesc: UnsafeRawPointer, attributes: PrimitiveAttributes, context: DNNLContext, what: String) throws {
        var pd: dnnl_primitive_desc_t?
        try dnnl(dnnl_primitive_desc_create(&pd, opDesc, attributes.handle, context.engine, nil), "create \(what) primitive descriptor")
        var p: dnnl_primitive_t?
        do { try dnnl(dnnl_primitive_create(&p, pd), "create \(what) primitive") } catch {
            dnnl_primitive_desc_destroy(pd); throw error
        }
        desc = pd!
        handle = p!
        self.context = context
    }

    /// A reorder between two layouts or data types (`dnnl_reorder_primitive_desc_create`).
    init(reorderFrom src: dnnl_memory_desc_t, to dst: dnnl_memory_desc_t, context: DNNLContext,
         attributes: PrimitiveAttributes? = nil) throws {
        var s = src, d = dst
        let attributes = try attributes ?? PrimitiveAttributes()
        var pd: dnnl_primitive_desc_t?
        try dnnl(dnnl_reorder_primitive_desc_create(&pd, &s, context.engine, &d, context.engine, attributes.handle),
                 "create reorder primitive descriptor")
        var p: dnnl_primitive_t?
        do { try dnnl(dnnl_primitive_create(&p, pd), "create reorder primitive") } catch {
            dnnl_primitive_desc_destroy(pd); throw error
        }
        desc = pd!
        handle = p!
        self.context = context
    }

    /// A memory descriptor the implementation chose (`dnnl_primitive_desc_query_md`).
    func query(_ what: dnnl_query_t, index: Int32 = 0) -> dnnl_memory_desc_t {
        dnnl_primitive_desc_query_md(desc, what, index)!.pointee
    }

    /// The implementation's name, e.g. `"jit:avx512_core"` (`dnnl_query_impl_info_str`).
    var implementation: String {
        var s: UnsafePointer<CChar>?
        guard dnnl_primitive_desc_query(desc, dnnl_query_impl_info_str, 0, &s) == dnnl_success, let s else { return "?" }
        return String(cString: s)
    }

    /// The primitive kind (`dnnl_query_primitive_kind`), e.g. `dnnl_convolution`.
    var kind: dnnl_primitive_kind_t {
        var k = dnnl_undefined_primitive
        _ = withUnsafeMutablePointer(to: &k) { dnnl_primitive_desc_query(desc, dnnl_query_primitive_kind, 0, $0) }
        return k
    }

    deinit {
        dnnl_primitive_destroy(handle)
        dnnl_primitive_desc_destroy(desc)
    }
}

/// Memory descriptor helpers (`dnnl_memory_desc_init_by_tag`, `dnnl_memory_desc_equal`, `dnnl_memory_desc_get_size`).
enum MD {
    static func make(_ dims: [Int], _ type: dnnl_data_type_t, _ tag: dnnl_format_tag_t) throws -> dnnl_memory_desc_t {
        var md = dnnl_memory_desc_t()
        var d = dims.map(Int64.init) + Array(repeating: 0, count: 12 - dims.count)
        try dnnl(dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), &d, type, tag), "describe memory \(dims)")
        return md
    }
    static func equal(_ a: dnnl_memory_desc_t, _ b: dnnl_memory_desc_t) -> Bool {
        var a = a, b = b
        return dnnl_memory_desc_equal(&a, &b) != 0
    }
    static func size(_ a: dnnl_memory_desc_t) -> Int {
        var a = a
        return dnnl_memory_desc_get_size(&a)
    }
    /// The plain (row-major) tag for a rank.
    static func plain(_ rank: Int) -> dnnl_format_tag_t {
        switch rank {
        case 1: return dnnl_a
        case 2: return dnnl_ab
        case 3: return dnnl_abc
        case 4: return dnnl_abcd
        default: return dnnl_abcde
        }
    }
}

/// dims of a memory descriptor.
extension dnnl_memory_desc_t {
    var dimensions: [Int] {
        withUnsafeBytes(of: dims) { raw in Array(raw.bindMemory(to: Int64.self).prefix(Int(ndims))).map(Int.init) }
    }
}
