import Foundation
import Media
import Testing
import TestSupport

@Suite("TensorScaler: pixels against ffmpeg's scale filter")
struct TensorScalerTests {
    /// Identity normalisation, so the floats are the 0...255 RGB bytes.
    static func raw(_ w: Int, _ h: Int, _ mode: ResizeMode) -> Preprocess {
        Preprocess(width: w, height: h, mode: mode, mean: [0, 0, 0], std: [1, 1, 1])
    }

    /// The ffmpeg filter chain that builds the same picture as our `mode` (same sws flags, rgb24).
    static func filter(for g: ScaleGeometry, _ w: Int, _ h: Int, _ mode: ResizeMode) -> String {
        let scale = "scale=\(g.scaledWidth):\(g.scaledHeight):flags=bilinear,format=rgb24"
        switch mode {
        case .stretch: return scale
        case .centerCrop: return "\(scale),crop=\(w):\(h):\(g.cropX):\(g.cropY)"
        case .letterbox: return "\(scale),pad=\(w):\(h):\(g.padX):\(g.padY):color=black"
        }
    }

    /// Frame `n` of `path` as planar floats from our scaler, and as rgb24 bytes from the ffmpeg CLI.
    static func compare(_ path: String, frame n: Int, _ pre: Preprocess) throws -> (maxDiff: Float, meanDiff: Double) {
        let source = try FrameSource(input: path)
        var frame: DecodedFrame?
        while let f = try source.next() { if f.index == n { frame = f; break } }
        let decoded = try #require(frame)
        let scaler = TensorScaler(preprocess: pre)
        var ours = [Float](repeating: .nan, count: pre.floatsPerImage)
        try ours.withUnsafeMutableBufferPointer { try scaler.write(decoded, to: $0.baseAddress!) }

        let g = ScaleGeometry(sourceWidth: decoded.width, sourceHeight: decoded.height,
                              width: pre.width, height: pre.height, mode: pre.mode)
        let vf = "select=eq(n\\\\,\(n)),\(filter(for: g, pre.width, pre.height, pre.mode))"
        let cli = try Fixtures.run("ffmpeg -v error -i '\(path)' -vf \"\(vf)\" -frames:v 1 -f rawvideo -pix_fmt rgb24 -")
        let theirs = [UInt8](cli.stdout)
        try #require(theirs.count == 3 * pre.width * pre.height, "ffmpeg gave \(theirs.count) bytes")
        let plane = pre.width * pre.height
        var maxDiff: Float = 0, sum = 0.0
        for i in 0..<plane {
            for c in 0..<3 {
                let d = abs(ours[c * plane + i] - Float(theirs[i * 3 + c]))
                maxDiff = max(maxDiff, d)
                sum += Double(d)
            }
        }
        return (maxDiff, sum / Double(3 * plane))
    }

    @Test("each resize mode matches ffmpeg scale(+crop/+pad) within a small tolerance", .enabled(if: TestEnv.hasAssets),
          arguments: [
            ("bikes.mp4", 30, 224, 224, ResizeMode.stretch),
            ("bikes.mp4", 30, 224, 224, ResizeMode.centerCrop),
            ("bikes.mp4", 30, 224, 224, ResizeMode.letterbox),
            ("carphone_pristine.mp4", 0, 160, 120, ResizeMode.stretch),
            ("carphone_pristine.mp4", 7, 100, 150, ResizeMode.centerCrop),
            ("slideshow_dev.mp4", 120, 224, 160, ResizeMode.letterbox),
          ])
    func matchesCLI(name: String, frame: Int, width: Int, height: Int, mode: ResizeMode) throws {
        let (maxDiff, meanDiff) = try Self.compare(Fixtures.video(name), frame: frame, Self.raw(width, height, mode))
        print("scaler vs ffmpeg: \(name) frame \(frame) \(width)x\(height) \(mode.rawValue): max \(maxDiff), mean \(meanDiff)")
        #expect(maxDiff <= 2, "max abs difference \(maxDiff) in 0...255 units")
        #expect(meanDiff <= 0.5, "mean abs difference \(meanDiff)")
    }
}
