/// How frames become model input: size, resize mode and per-channel normalisation
/// (`(pixel - mean[c]) / std[c]` on 0...255 RGB values), written as planar float32 RGB (NCHW).
public struct Preprocess: Sendable, Equatable, Codable {
    /// Model input width and height.
    public var width: Int
    public var height: Int
    /// How the frame is fitted into width x height.
    public var mode: ResizeMode
    /// Per RGB channel, on 0...255 pixel values.
    public var mean: [Float]
    public var std: [Float]
    /// The 0...255 value of letterbox borders on every channel before normalisation. Default 0
    /// (black), the same as ffmpeg's `pad` filter, so the CLI can reproduce the output.
    public var padValue: UInt8 = 0

    /// Creates a preprocessing description. `mean` and `std` have 3 entries (R, G, B); std is non-zero.
    public init(width: Int, height: Int, mode: ResizeMode = .stretch, mean: [Float], std: [Float], padValue: UInt8 = 0) {
        precondition(width > 0 && height > 0, "model input size must be positive")
        precondition(mean.count == 3 && std.count == 3 && !std.contains(0), "mean/std need 3 entries, std non-zero")
        self.width = width
        self.height = height
        self.mode = mode
        self.mean = mean
        self.std = std
        self.padValue = padValue
    }

    /// TensorFlow-style `[-1, 1]` scaling (mean 127.5, std 127.5), as the shared MobileNetV2 expects.
    public static func minusOneToOne(size: Int) -> Preprocess {
        Preprocess(width: size, height: size, mean: [127.5, 127.5, 127.5], std: [127.5, 127.5, 127.5])
    }

    /// torchvision-style ImageNet normalisation (mean 123.675/116.28/103.53, std 58.395/57.12/57.375).
    public static func imagenet(size: Int) -> Preprocess {
        Preprocess(width: size, height: size, mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375])
    }

    /// Floats per image: 3 * height * width.
    public var floatsPerImage: Int { 3 * width * height }

    private enum CodingKeys: String, CodingKey { case width, height, mode, mean, std, padValue }

    /// Decodes and validates (a bad size or mean/std throws instead of failing a precondition);
    /// `mode` defaults to stretch and `padValue` to 0 when absent.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let width = try c.decode(Int.self, forKey: .width), height = try c.decode(Int.self, forKey: .height)
        guard width > 0 && height > 0 else {
            throw DecodingError.dataCorruptedError(forKey: .width, in: c, debugDescription: "model input size must be positive")
        }
        let mean = try c.decode([Float].self, forKey: .mean), std = try c.decode([Float].self, forKey: .std)
        guard mean.count == 3 && std.count == 3 && !std.contains(0) else {
            throw DecodingError.dataCorruptedError(forKey: .std, in: c, debugDescription: "mean and std need 3 entries (R, G, B), std non-zero")
        }
        self.init(width: width, height: height, mode: try c.decodeIfPresent(ResizeMode.self, forKey: .mode) ?? .stretch,
                  mean: mean, std: std, padValue: try c.decodeIfPresent(UInt8.self, forKey: .padValue) ?? 0)
    }
}

/// Where a source frame of a given size lands in the model input, for one resize mode.
/// Pure arithmetic, shared by `TensorScaler` and the tests that rebuild the same picture with ffmpeg.
public struct ScaleGeometry: Sendable, Equatable {
    /// The size swscale produces (the whole frame, resized).
    public var scaledWidth: Int
    public var scaledHeight: Int
    /// Top-left of the model-input window inside the scaled picture (center-crop), else 0.
    public var cropX: Int
    public var cropY: Int
    /// Top-left of the scaled picture inside the model input (letterbox), else 0.
    public var padX: Int
    public var padY: Int

    /// The geometry for a `sourceWidth` x `sourceHeight` frame into `width` x `height` with `mode`.
    /// Scaled sizes are rounded to the nearest pixel; offsets centre the picture (rounding down),
    /// as ffmpeg's `crop` and `pad` filters do with `(in_w-out_w)/2` and `(ow-iw)/2`.
    public init(sourceWidth: Int, sourceHeight: Int, width: Int, height: Int, mode: ResizeMode) {
        precondition(sourceWidth > 0 && sourceHeight > 0 && width > 0 && height > 0)
        let sx = Double(width) / Double(sourceWidth), sy = Double(height) / Double(sourceHeight)
        switch mode {
        case .stretch:
            scaledWidth = width; scaledHeight = height
        case .centerCrop:
            let s = max(sx, sy)
            scaledWidth = max(width, Int((Double(sourceWidth) * s).rounded()))
            scaledHeight = max(height, Int((Double(sourceHeight) * s).rounded()))
        case .letterbox:
            let s = min(sx, sy)
            scaledWidth = min(width, max(1, Int((Double(sourceWidth) * s).rounded())))
            scaledHeight = min(height, max(1, Int((Double(sourceHeight) * s).rounded())))
        }
        cropX = max(0, (scaledWidth - width) / 2)
        cropY = max(0, (scaledHeight - height) / 2)
        padX = max(0, (width - scaledWidth) / 2)
        padY = max(0, (height - scaledHeight) / 2)
    }
}
