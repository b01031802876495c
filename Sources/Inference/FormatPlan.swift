// Which memory formats the engine asks oneDNN for, per precision and per instruction set: the one
// place where that is decided. oneDNN 2.6 picks a kernel by the formats it is given; the wrong
// format for the CPU gives a reference kernel (`ref:any`, ~1000x slower), so the choice follows
// the ISA oneDNN reports (`dnnl_get_effective_cpu_isa`, which honours ONEDNN_MAX_CPU_ISA).
//
// Measured on an AMD EPYC (Zen 3, AVX2, 2 cores), MobileNetV2 1.0/224 fp32, batch 16 (see
// bench/README.md for the figures and the command):
// - avx2 / avx / sse41: nChw8c gives jit_1x1 / jit_dw / jit kernels for every convolution and is the
//   fastest; nhwc and "any" (oneDNN then picks nhwc) give brgconv on avx2 (slower) and gemm or ref
//   kernels below; nChw16c gives ref:any for every convolution.
// - avx512_core and above: nChw16c (jit_1x1 / jit_dw:avx512_core, ~1.2x oneDNN's own nhwc choice).
// - bf16 with AMX: "any" (nhwc, AMX brgemm kernels; a forced block turns AMX off, 3x slower);
//   bf16 without AMX: nChw16c, like fp32 on AVX-512.
// - int8: u8 activations (int8 models' values shifted by 128), s8 weights, channels last (nhwc is
//   what oneDNN's int8 jit kernels take on every ISA; blocked int8 layouts get ref kernels). Without
//   VNNI, oneDNN multiplies u8 x s8 with vpmaddubsw, whose pairwise int16 sums saturate for
//   full-range weights (`pairSums16`): Network+Int8.swift then checks each layer's weights and
//   halves those that could saturate (oneDNN's own remedy for s8 sources, done per layer here);
//   with VNNI (vpdpbusd, int32 sums) every layer is exact.
import CDNNL

/// An x86-64 instruction set as oneDNN names it (`dnnl_cpu_isa_t`). Each value is a bit mask that
/// contains every instruction set it extends (avx2 contains avx contains sse41).
public struct CPUISA: Hashable, Sendable, CustomStringConvertible {
    /// The `dnnl_cpu_isa_t` bit mask.
    public let mask: UInt32
    /// oneDNN's name for it, as in `ONEDNN_MAX_CPU_ISA` (lower case), e.g. `"avx2"`.
    public let name: String

    public static let sse41 = CPUISA(mask: dnnl_cpu_isa_sse41.rawValue, name: "sse41")
    public static let avx = CPUISA(mask: dnnl_cpu_isa_avx.rawValue, name: "avx")
    public static let avx2 = CPUISA(mask: dnnl_cpu_isa_avx2.rawValue, name: "avx2")
    public static let avx2VNNI = CPUISA(mask: dnnl_cpu_isa_avx2_vnni.rawValue, name: "avx2_vnni")
    public static let avx512Core = CPUISA(mask: dnnl_cpu_isa_avx512_core.rawValue, name: "avx512_core")
    public static let avx512CoreVNNI = CPUISA(mask: dnnl_cpu_isa_avx512_core_vnni.rawValue, name: "avx512_core_vnni")
    public static let avx512CoreBF16 = CPUISA(mask: dnnl_cpu_isa_avx512_core_bf16.rawValue, name: "avx512_core_bf16")
    public static let avx512CoreAMX = CPUISA(mask: dnnl_cpu_isa_avx512_core_amx.rawValue, name: "avx512_core_amx")

    /// Every instruction set oneDNN 2.6 dispatches to on x86-64, smallest first.
    public static let known: [CPUISA] = [.sse41, .avx, .avx2, .avx2VNNI, .avx512Core, .avx512CoreVNNI,
                                         .avx512CoreBF16, .avx512CoreAMX]

    /// The instruction set oneDNN dispatches to in this process (`dnnl_get_effective_cpu_isa`,
    /// capped by `ONEDNN_MAX_CPU_ISA`, which oneDNN reads once per process).
    public static var effective: CPUISA {
        let mask = dnnl_get_effective_cpu_isa().rawValue
        return known.first { $0.mask == mask } ?? CPUISA(mask: mask, name: "isa_0x" + String(mask, radix: 16))
    }

    /// The known instruction set named `name` (case-insensitive, as `ONEDNN_MAX_CPU_ISA` spells it).
    public static func named(_ name: String) -> CPUISA? { known.first { $0.name == name.lowercased() } }

    /// True when this instruction set includes everything `other` has.
    public func includes(_ other: CPUISA) -> Bool { mask & other.mask == other.mask }

    /// oneDNN's name, e.g. `avx2`.
    public var description: String { name }
}

/// How activations are laid out in memory between layers.
public enum ActivationLayout: String, Sendable {
    /// Channels in blocks of 8 (`nChw8c`): one AVX/AVX2 register of f32.
    case blocked8 = "nChw8c"
    /// Channels in blocks of 16 (`nChw16c`): one AVX-512 register of f32.
    case blocked16 = "nChw16c"
    /// Channels last (`nhwc`).
    case channelsLast = "nhwc"
    /// Left to oneDNN (`dnnl_format_tag_any`): each primitive picks, the next one adapts.
    case any

    /// The oneDNN tag to force, or nil to leave the choice to oneDNN.
    var tag: dnnl_format_tag_t? {
        switch self {
        case .blocked8: return dnnl_nChw8c
        case .blocked16: return dnnl_nChw16c
        case .channelsLast: return dnnl_nhwc
        case .any: return nil
        }
    }
}

/// The formats the engine uses for one precision on one instruction set.
public struct FormatPlan: Sendable, Equatable {
    /// Data type of activations and weights inside the network (the input and outputs stay f32).
    public var dataType: DataType
    /// Layout of the activations between layers (weights are always left to oneDNN).
    public var activations: ActivationLayout
    /// Whether a 1x1 convolution and the 3x3 depthwise one after it run as one primitive (oneDNN's
    /// depthwise post-op) where oneDNN has a jit kernel for the pair.
    public var fuseDepthwise = true
    /// int8 only: u8 x s8 products are summed in pairs into saturating int16 (no VNNI).
    public var pairSums16 = false

    /// A oneDNN element type, named so callers need not import CDNNL.
    public enum DataType: String, Sendable {
        case f32, bf16
        /// u8 activations with s8 weights and s32 accumulation (Network+Int8.swift).
        case int8
        var dnnl: dnnl_data_type_t {
            switch self {
            case .f32: return dnnl_f32
            case .bf16: return dnnl_bf16
            case .int8: return dnnl_s8
            }
        }
    }

    /// One row of the table: a plan for `precision` on CPUs that have at least `isa`.
    struct Row {
        var precision: Precision
        var isa: CPUISA
        var plan: FormatPlan
    }

    /// The table. For a precision, the row with the largest instruction set the CPU includes wins,
    /// so a new instruction set (or precision) is one more row. A precision with no row for the
    /// CPU is not supported there (`plan(for:on:)` returns nil and the engine refuses it).
    static let table: [Row] = [
        Row(precision: .fp32, isa: .sse41, plan: FormatPlan(dataType: .f32, activations: .blocked8)),
        Row(precision: .fp32, isa: .avx512Core, plan: FormatPlan(dataType: .f32, activations: .blocked16)),
        Row(precision: .bf16, isa: .avx512CoreBF16, plan: FormatPlan(dataType: .bf16, activations: .blocked16)),
        Row(precision: .bf16, isa: .avx512CoreAMX, plan: FormatPlan(dataType: .bf16, activations: .any)),
        Row(precision: .int8, isa: .sse41, plan: FormatPlan(dataType: .int8, activations: .channelsLast, fuseDepthwise: false, pairSums16: true)),
        Row(precision: .int8, isa: .avx2VNNI, plan: FormatPlan(dataType: .int8, activations: .channelsLast, fuseDepthwise: false)),
        Row(precision: .int8, isa: .avx512Core, plan: FormatPlan(dataType: .int8, activations: .channelsLast, fuseDepthwise: false, pairSums16: true)),
        Row(precision: .int8, isa: .avx512CoreVNNI, plan: FormatPlan(dataType: .int8, activations: .channelsLast, fuseDepthwise: false)),
    ]

    /// The plan for `precision` on `isa`, or nil when the table has no row for it (unsupported).
    ///
    /// `FRAMEPIPE_ACTIVATION_LAYOUT` (nChw8c, nChw16c, nhwc, any) and `FRAMEPIPE_DW_FUSION` (0, 1)
    /// override the table, to measure alternatives (bench/README.md); not meant for production use.
    public static func plan(for precision: Precision, on isa: CPUISA = .effective,
                            environment: [String: String] = [:]) -> FormatPlan? {
        let rows = table.filter { $0.precision == precision && isa.includes($0.isa) }
        guard var plan = rows.max(by: { $0.isa.mask.nonzeroBitCount < $1.isa.mask.nonzeroBitCount })?.plan else { return nil }
        if let name = environment["FRAMEPIPE_ACTIVATION_LAYOUT"], let layout = ActivationLayout(rawValue: name) {
            plan.activations = layout
        }
        if let fuse = environment["FRAMEPIPE_DW_FUSION"], fuse == "0" || fuse == "1" { plan.fuseDepthwise = fuse == "1" }
        return plan
    }

    /// The smallest instruction set on which `precision` has a plan (for error messages).
    public static func minimumISA(for precision: Precision) -> CPUISA? {
        table.filter { $0.precision == precision }.min { $0.isa.mask.nonzeroBitCount < $1.isa.mask.nonzeroBitCount }?.isa
    }
}
