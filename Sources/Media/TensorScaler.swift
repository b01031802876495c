import CFFmpeg

/// Turns decoded frames into normalised float32 planar RGB (one NCHW slot of a batch).
///
/// swscale resizes and converts to packed RGB24 in a reusable scratch buffer, then a 256-entry
/// lookup table per channel maps bytes to `(v - mean) / std` while de-interleaving into the slot.
/// Resize: bilinear (`SWS_BILINEAR`), chosen because the shared reference top-5 used a whole-image
/// bilinear resize; the output equals ffmpeg's `scale=W:H:flags=bilinear` to rgb24 (then `crop` /
/// `pad` for the other modes; see `ScaleGeometry`). Letterbox borders take `Preprocess.padValue`
/// (default 0, black, like the `pad` filter).
/// Not thread-safe: one per scale stage. No allocation per frame in steady state: the sws context
/// and scratch are re-created only when the frame size, pixel format or colour range changes.
/// Frames are used in their stored orientation (stream rotation is not applied).
public final class TensorScaler {
    /// The preprocessing this scaler applies.
    public let preprocess: Preprocess
    private let sws = SwsHolder()
    private var key: SwsKey?
    private var geometry: ScaleGeometry?
    private var scratch: UnsafeMutablePointer<UInt8>?
    private var scratchStride = 0
    private var scratchBytes = 0
    /// lut[c * 256 + v] = (v - mean[c]) / std[c].
    private let lut: UnsafeMutablePointer<Float>

    /// The swscale flags used (bilinear).
    public static let swsFlags = SWS_BILINEAR

    private struct SwsKey: Equatable {
        var width: Int32, height: Int32, format: Int32, fullRange: Bool, colorspace: UInt32
    }

    /// Creates a scaler for `preprocess`.
    public init(preprocess: Preprocess) {
        self.preprocess = preprocess
        lut = .allocate(capacity: 3 * 256)
        for c in 0..<3 {
            for v in 0..<256 { lut[c * 256 + v] = (Float(v) - preprocess.mean[c]) / preprocess.std[c] }
        }
    }

    deinit {
        lut.deallocate()
        av_free(scratch)
    }

    /// Writes 3*H*W floats, planar RGB (an NCHW slot), into `dst`. Re-creates the sws context when
    /// the frame's size, pixel format, range or colour matrix changes (`sws_getContext`,
    /// `sws_setColorspaceDetails`, `sws_scale`). Throws when swscale cannot handle the frame.
    public func write(_ frame: DecodedFrame, to dst: UnsafeMutablePointer<Float>) throws {
        let f = frame.frame
        let k = SwsKey(width: f.pointee.width, height: f.pointee.height, format: f.pointee.format,
                       fullRange: f.pointee.color_range == AVCOL_RANGE_JPEG,
                       colorspace: f.pointee.colorspace.rawValue)
        if k != key { try configure(k) }
        let g = geometry!
        let rows = fp_sws_scale_frame(sws.ctx, f, scratch, Int32(scratchStride))
        guard rows == Int32(g.scaledHeight) else {
            throw MediaError(input: "frame \(frame.index)", operation: "scale",
                             code: rows < 0 ? rows : nil, message: rows < 0 ? nil : "swscale produced \(rows) rows")
        }
        convert(g, to: dst)
    }

    /// Builds the sws context and scratch for frames described by `k`.
    private func configure(_ k: SwsKey) throws {
        guard k.width > 0, k.height > 0, k.format >= 0 else {
            throw MediaError(input: "frame", operation: "scale", message: "frame has no picture (\(k.width)x\(k.height))")
        }
        let p = preprocess
        let g = ScaleGeometry(sourceWidth: Int(k.width), sourceHeight: Int(k.height),
                              width: p.width, height: p.height, mode: p.mode)
        sws.replace(nil)
        guard let ctx = sws_getContext(k.width, k.height, AVPixelFormat(k.format),
                                       Int32(g.scaledWidth), Int32(g.scaledHeight), AV_PIX_FMT_RGB24,
                                       TensorScaler.swsFlags, nil, nil, nil) else {
            let name = av_get_pix_fmt_name(AVPixelFormat(k.format)).map { String(cString: $0) } ?? "\(k.format)"
            throw MediaError(input: "frame", operation: "scale",
                             message: "swscale cannot convert \(name) \(k.width)x\(k.height) to rgb24")
        }
        sws.replace(ctx)
        // Source range and matrix from the frame (BT.601 unless it says BT.709 etc.), like the scale filter.
        let cs = Int32(k.colorspace)
        let known = cs == AVCOL_SPC_BT709.rawValue || cs == AVCOL_SPC_FCC.rawValue || cs == AVCOL_SPC_SMPTE240M.rawValue
            || cs == AVCOL_SPC_BT2020_NCL.rawValue || cs == AVCOL_SPC_BT2020_CL.rawValue
        let table = sws_getCoefficients(known ? cs : SWS_CS_DEFAULT)
        _ = sws_setColorspaceDetails(ctx, table, k.fullRange ? 1 : 0, sws_getCoefficients(SWS_CS_DEFAULT), 1,
                                     0, 1 << 16, 1 << 16)
        let stride = (g.scaledWidth * 3 + 63) & ~63
        let bytes = stride * g.scaledHeight
        if bytes > scratchBytes {
            av_free(scratch)
            guard let mem = av_malloc(bytes) else {
                throw MediaError(input: "frame", operation: "scale", code: fp_averror(ENOMEM))
            }
            scratch = mem.assumingMemoryBound(to: UInt8.self)
            scratchBytes = bytes
        }
        scratchStride = stride
        geometry = g
        key = k
    }

    /// De-interleaves the RGB24 scratch into planar floats through the lookup tables.
    private func convert(_ g: ScaleGeometry, to dst: UnsafeMutablePointer<Float>) {
        let w = preprocess.width, h = preprocess.height, plane = w * h
        let r = dst, gr = dst + plane, b = dst + 2 * plane
        let lr = lut, lg = lut + 256, lb = lut + 512
        let src = scratch!
        if preprocess.mode == .letterbox && (g.scaledWidth < w || g.scaledHeight < h) {
            let pad = Int(preprocess.padValue)
            r.update(repeating: lr[pad], count: plane)
            gr.update(repeating: lg[pad], count: plane)
            b.update(repeating: lb[pad], count: plane)
        }
        // Visible window: the whole model input, or the scaled picture inside the letterbox.
        let copyW = min(w, g.scaledWidth), copyH = min(h, g.scaledHeight)
        for y in 0..<copyH {
            var s = src + (g.cropY + y) * scratchStride + g.cropX * 3
            let o = (g.padY + y) * w + g.padX
            for x in 0..<copyW {
                r[o + x] = lr[Int(s[0])]
                gr[o + x] = lg[Int(s[1])]
                b[o + x] = lb[Int(s[2])]
                s += 3
            }
        }
    }
}

/// Owns a `SwsContext` (`sws_freeContext` in deinit).
final class SwsHolder {
    private(set) var ctx: OpaquePointer?
    func replace(_ new: OpaquePointer?) {
        if let ctx { sws_freeContext(ctx) }
        ctx = new
    }
    deinit { replace(nil) }
}
