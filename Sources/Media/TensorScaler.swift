import CFFmpeg

/// Turns decoded frames into normalised float32 planar RGB (one NCHW slot of a batch).
///
/// swscale resizes and converts to packed RGB24 in a reusable scratch buffer, then a 256-entry
/// lookup table per channel maps bytes to `(v - mean) / std` while de-interleaving into the slot.
///
/// - Resize: bilinear (`SWS_BILINEAR`), chosen because the shared reference top-5 used a whole-image
///   bilinear resize; the output equals ffmpeg's `scale=W:H:flags=bilinear` to rgb24 (then `crop` /
///   `pad` for the other modes; see `ScaleGeometry`).
/// - Letterbox borders take `Preprocess.padValue` (default 0, black, like the `pad` filter).
/// - Pixels are treated as square (the sample aspect ratio is ignored, as by the `scale` filter);
///   the source's range (full/limited) and matrix (BT.601 unless the frame says otherwise) are honoured.
/// - Rotation: by default the stream's display rotation (`DecodedFrame.rotation`, multiples of 90°)
///   is honoured, as ffmpeg's autorotate does, so the model sees the picture upright. The picture is
///   scaled in stored orientation and rotated while being copied into the slot (no extra pass).
/// - Not thread-safe: one per scale stage. No allocation per frame in steady state: the sws context
///   and scratch are re-created only when the frame size, pixel format, range or rotation changes.
public final class TensorScaler {
    /// The preprocessing this scaler applies.
    public let preprocess: Preprocess
    /// Whether display rotation is applied (see the type's doc).
    public let honoursRotation: Bool
    private let sws = SwsHolder()
    private var key: SwsKey?
    private var geometry: ScaleGeometry?
    private var scratch: UnsafeMutablePointer<UInt8>?
    private var scratchStride = 0
    private var scratchBytes = 0
    /// Scaled picture size in stored orientation (what swscale writes).
    private var storedWidth = 0, storedHeight = 0
    /// lut[c * 256 + v] = (v - mean[c]) / std[c].
    private let lut: UnsafeMutablePointer<Float>

    /// The swscale flags used (bilinear).
    public static let swsFlags = SWS_BILINEAR

    private struct SwsKey: Equatable {
        var width: Int32, height: Int32, format: Int32, fullRange: Bool, colorspace: UInt32, rotation: Int
    }

    /// Creates a scaler for `preprocess`; `honoursRotation: false` keeps frames in stored orientation.
    public init(preprocess: Preprocess, honoursRotation: Bool = true) {
        self.preprocess = preprocess
        self.honoursRotation = honoursRotation
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
    /// the frame's size, pixel format, range, colour matrix or rotation changes (`sws_getContext`,
    /// `sws_setColorspaceDetails`, `sws_scale`). Throws a `MediaError` naming the frame's input when
    /// swscale cannot handle the frame.
    public func write(_ frame: DecodedFrame, to dst: UnsafeMutablePointer<Float>) throws {
        let f = frame.frame
        let k = SwsKey(width: f.pointee.width, height: f.pointee.height, format: f.pointee.format,
                       fullRange: f.pointee.color_range == AVCOL_RANGE_JPEG,
                       colorspace: f.pointee.colorspace.rawValue,
                       rotation: honoursRotation ? frame.rotation : 0)
        if k != key { try configure(k, frame) }
        let rows = fp_sws_scale_frame(sws.ctx, f, scratch, Int32(scratchStride))
        guard rows == Int32(storedHeight) else {
            throw MediaError(input: frame.input, operation: "scale frame \(frame.index)",
                             code: rows < 0 ? rows : nil, message: rows < 0 ? nil : "swscale produced \(rows) rows")
        }
        convert(geometry!, rotation: k.rotation, to: dst)
    }

    /// Builds the sws context and scratch for frames described by `k`.
    private func configure(_ k: SwsKey, _ frame: DecodedFrame) throws {
        let operation = "scale frame \(frame.index)"
        guard k.width > 0, k.height > 0, k.format >= 0 else {
            throw MediaError(input: frame.input, operation: operation, message: "frame has no picture (\(k.width)x\(k.height))")
        }
        let p = preprocess
        let quarterTurn = k.rotation == 90 || k.rotation == 270
        // Geometry in display orientation; swscale works in stored orientation.
        let g = ScaleGeometry(sourceWidth: Int(quarterTurn ? k.height : k.width),
                              sourceHeight: Int(quarterTurn ? k.width : k.height),
                              width: p.width, height: p.height, mode: p.mode)
        let tw = quarterTurn ? g.scaledHeight : g.scaledWidth
        let th = quarterTurn ? g.scaledWidth : g.scaledHeight
        sws.replace(nil)
        key = nil
        guard let ctx = sws_getContext(k.width, k.height, AVPixelFormat(k.format), Int32(tw), Int32(th),
                                       AV_PIX_FMT_RGB24, TensorScaler.swsFlags, nil, nil, nil) else {
            throw MediaError(input: frame.input, operation: operation,
                             message: "swscale cannot convert \(frame.pixelFormat) \(k.width)x\(k.height) to rgb24")
        }
        sws.replace(ctx)
        // Source range and matrix from the frame (BT.601 unless it says otherwise), like the scale filter.
        let cs = Int32(k.colorspace)
        let known = [AVCOL_SPC_BT709, AVCOL_SPC_FCC, AVCOL_SPC_SMPTE240M, AVCOL_SPC_BT2020_NCL, AVCOL_SPC_BT2020_CL]
            .contains { Int32($0.rawValue) == cs }
        _ = sws_setColorspaceDetails(ctx, sws_getCoefficients(known ? cs : SWS_CS_DEFAULT), k.fullRange ? 1 : 0,
                                     sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16)
        let stride = (tw * 3 + 63) & ~63
        let bytes = stride * th
        if bytes > scratchBytes {
            av_free(scratch)
            scratch = nil
            scratchBytes = 0
            guard let mem = av_malloc(bytes) else {
                throw MediaError(input: frame.input, operation: operation, code: fp_averror(ENOMEM))
            }
            scratch = mem.assumingMemoryBound(to: UInt8.self)
            scratchBytes = bytes
        }
        scratchStride = stride
        storedWidth = tw
        storedHeight = th
        geometry = g
        key = k
    }

    /// De-interleaves the RGB24 scratch into planar floats through the lookup tables, reading the
    /// scratch in rotated order when the picture is turned.
    private func convert(_ g: ScaleGeometry, rotation: Int, to dst: UnsafeMutablePointer<Float>) {
        let w = preprocess.width, h = preprocess.height, plane = w * h
        let r = dst, gr = dst + plane, b = dst + 2 * plane
        let lr = lut, lg = lut + 256, lb = lut + 512
        if preprocess.mode == .letterbox && (g.scaledWidth < w || g.scaledHeight < h) {
            let pad = Int(preprocess.padValue)
            r.update(repeating: lr[pad], count: plane)
            gr.update(repeating: lg[pad], count: plane)
            b.update(repeating: lb[pad], count: plane)
        }
        // Display pixel (X, Y) of the scaled picture lives at scratch byte start + X*xStep + Y*yStep.
        let stride = scratchStride, tw = storedWidth, th = storedHeight
        let (origin, xStep, yStep): (Int, Int, Int)
        switch rotation {
        case 90: (origin, xStep, yStep) = ((th - 1) * stride, -stride, 3)            // S(Y, th-1-X)
        case 180: (origin, xStep, yStep) = ((th - 1) * stride + (tw - 1) * 3, -3, -stride)
        case 270: (origin, xStep, yStep) = ((tw - 1) * 3, stride, -3)                // S(tw-1-Y, X)
        default: (origin, xStep, yStep) = (0, 3, stride)
        }
        let src = scratch!
        // Visible window: the whole model input, or the scaled picture inside the letterbox.
        let copyW = min(w, g.scaledWidth), copyH = min(h, g.scaledHeight)
        for y in 0..<copyH {
            var s = origin + g.cropX * xStep + (g.cropY + y) * yStep
            let o = (g.padY + y) * w + g.padX
            for x in 0..<copyW {
                r[o + x] = lr[Int(src[s])]
                gr[o + x] = lg[Int(src[s + 1])]
                b[o + x] = lb[Int(src[s + 2])]
                s += xStep
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
