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
    /// With `turn` (clockwise degrees), the picture is scaled in stored orientation and then
    /// transposed, which is TensorScaler's order of work (ffmpeg's autorotate turns first).
    static func filter(for g: ScaleGeometry, _ w: Int, _ h: Int, _ mode: ResizeMode, turn: Int = 0) -> String {
        var scale = "scale=\(g.scaledWidth):\(g.scaledHeight):flags=bilinear,format=rgb24"
        switch turn {
        case 90: scale = "scale=\(g.scaledHeight):\(g.scaledWidth):flags=bilinear,format=rgb24,transpose=clock"
        case 180: scale += ",hflip,vflip"
        case 270: scale = "scale=\(g.scaledHeight):\(g.scaledWidth):flags=bilinear,format=rgb24,transpose=cclock"
        default: break
        }
        switch mode {
        case .stretch: return scale
        case .centerCrop: return "\(scale),crop=\(w):\(h):\(g.cropX):\(g.cropY)"
        case .letterbox: return "\(scale),pad=\(w):\(h):\(g.padX):\(g.padY):color=black"
        }
    }

    /// Frame `n` of `path` as planar floats from our scaler, and as rgb24 bytes from the ffmpeg CLI.
    static func compare(_ path: String, frame n: Int, _ pre: Preprocess, scaleThenTurn: Bool = false) throws -> (maxDiff: Float, meanDiff: Double) {
        let source = try FrameSource(input: path)
        var frame: DecodedFrame?
        while let f = try source.next() { if f.index == n { frame = f; break } }
        let decoded = try #require(frame)
        let scaler = TensorScaler(preprocess: pre)
        var ours = [Float](repeating: .nan, count: pre.floatsPerImage)
        try ours.withUnsafeMutableBufferPointer { try scaler.write(decoded, to: $0.baseAddress!) }

        // ffmpeg's autorotate turns the picture before our filters; geometry is in display orientation.
        let turned = decoded.rotation == 90 || decoded.rotation == 270
        let g = ScaleGeometry(sourceWidth: turned ? decoded.height : decoded.width,
                              sourceHeight: turned ? decoded.width : decoded.height,
                              width: pre.width, height: pre.height, mode: pre.mode)
        let chain = filter(for: g, pre.width, pre.height, pre.mode, turn: scaleThenTurn ? decoded.rotation : 0)
        let vf = "select=eq(n\\\\,\(n)),\(chain)"
        let cli = try Fixtures.run("ffmpeg -v error \(scaleThenTurn ? "-noautorotate" : "") -i '\(path)' -vf \"\(vf)\" -frames:v 1 -f rawvideo -pix_fmt rgb24 -")
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
            ("../images/kite_and_cold.jpg", 0, 224, 224, ResizeMode.stretch),   // full-range yuvj420p
            ("../images/cat.bmp", 0, 224, 224, ResizeMode.centerCrop),          // bgr24
          ])
    func matchesCLI(name: String, frame: Int, width: Int, height: Int, mode: ResizeMode) throws {
        let (maxDiff, meanDiff) = try Self.compare(Fixtures.video(name), frame: frame, Self.raw(width, height, mode))
        print("scaler vs ffmpeg: \(name) frame \(frame) \(width)x\(height) \(mode.rawValue): max \(maxDiff), mean \(meanDiff)")
        #expect(maxDiff <= 2, "max abs difference \(maxDiff) in 0...255 units")
        #expect(meanDiff <= 0.5, "mean abs difference \(meanDiff)")
    }
}

@Suite("TensorScaler: display rotation")
struct TensorScalerRotationTests {
    @Test("rotated streams: exact vs ffmpeg scale-then-transpose, close to ffmpeg autorotate", .enabled(if: TestEnv.hasAssets),
          arguments: [90, 180, 270])
    func rotation(tag: Int) throws {
        let dir = try TestEnv.tempDir("media-rotate")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("rot\(tag).mp4").path
        try Fixtures.run("ffmpeg -v error -y -i '\(Fixtures.video("carphone_pristine.mp4"))' -c copy -metadata:s:v:0 rotate=\(tag) '\(path)'")
        let source = try FrameSource(input: path)
        #expect(source.stream.rotation != 0)
        for (w, h, mode) in [(96, 64, ResizeMode.stretch), (64, 96, .centerCrop), (80, 80, .letterbox)] {
            let pre = TensorScalerTests.raw(w, h, mode)
            // Same order of work in the CLI (scale, then transpose/flip): equal.
            let exact = try TensorScalerTests.compare(path, frame: 3, pre, scaleThenTurn: true)
            #expect(exact.maxDiff <= 2 && exact.meanDiff <= 0.5, "\(w)x\(h) \(mode.rawValue): \(exact)")
            // ffmpeg's own autorotate (turn, then scale): same picture, but 4:2:0 chroma is resampled
            // along the other axis, so edges differ by some levels; a wrong turn would differ by tens.
            let auto = try TensorScalerTests.compare(path, frame: 3, pre)
            print("rotated \(source.stream.rotation) \(w)x\(h) \(mode.rawValue): scale-then-turn \(exact), vs autorotate \(auto)")
            #expect(auto.meanDiff <= 2.5, "\(w)x\(h) \(mode.rawValue) vs autorotate: \(auto)")
        }
    }

    @Test("honoursRotation: false keeps the stored orientation")
    func storedOrientation() throws {
        let dir = try TestEnv.tempDir("media-rotate-off")
        defer { try? FileManager.default.removeItem(at: dir) }
        let plain = dir.appendingPathComponent("plain.mp4").path, turned = dir.appendingPathComponent("turned.mp4").path
        try Fixtures.run("ffmpeg -v error -y -f lavfi -i testsrc=size=64x48:rate=5 -frames:v 2 -c:v libx264 -pix_fmt yuv420p '\(plain)'")
        try Fixtures.run("ffmpeg -v error -y -i '\(plain)' -c copy -metadata:s:v:0 rotate=180 '\(turned)'")
        let a = try #require(try FrameSource(input: plain).next()), b = try #require(try FrameSource(input: turned).next())
        #expect(a.rotation == 0 && b.rotation == 180)
        let pre = TensorScalerTests.raw(32, 24, .stretch)
        var x = [Float](repeating: 0, count: pre.floatsPerImage), y = x, z = x
        try x.withUnsafeMutableBufferPointer { try TensorScaler(preprocess: pre).write(a, to: $0.baseAddress!) }
        try y.withUnsafeMutableBufferPointer { try TensorScaler(preprocess: pre, honoursRotation: false).write(b, to: $0.baseAddress!) }
        try z.withUnsafeMutableBufferPointer { try TensorScaler(preprocess: pre).write(b, to: $0.baseAddress!) }
        #expect(x == y)
        // Turned by 180: each plane reversed.
        let plane = 32 * 24
        for c in 0..<3 {
            #expect(Array(x[(c * plane)..<((c + 1) * plane)].reversed()) == Array(z[(c * plane)..<((c + 1) * plane)]))
        }
    }
}

@Suite("TensorScaler: normalisation and reconfiguration")
struct TensorScalerBehaviourTests {
    @Test("mean/std are applied per channel through the lookup table", .enabled(if: TestEnv.hasAssets))
    func normalisation() throws {
        let frame = try #require(try FrameSource(input: Fixtures.video("slideshow_dev.mp4")).next())
        var raw = [Float](repeating: 0, count: 3 * 64 * 48)
        var net = raw, tf = raw
        try raw.withUnsafeMutableBufferPointer {
            try TensorScaler(preprocess: TensorScalerTests.raw(64, 48, .stretch)).write(frame, to: $0.baseAddress!)
        }
        var imagenet = Preprocess.imagenet(size: 1)
        imagenet.width = 64; imagenet.height = 48
        try net.withUnsafeMutableBufferPointer { try TensorScaler(preprocess: imagenet).write(frame, to: $0.baseAddress!) }
        var minus = Preprocess.minusOneToOne(size: 1)
        minus.width = 64; minus.height = 48
        try tf.withUnsafeMutableBufferPointer { try TensorScaler(preprocess: minus).write(frame, to: $0.baseAddress!) }
        let plane = 64 * 48
        for i in 0..<(3 * plane) {
            let c = i / plane
            #expect(abs(net[i] - (raw[i] - imagenet.mean[c]) / imagenet.std[c]) < 1e-5)
            #expect(abs(tf[i] - (raw[i] / 127.5 - 1)) < 1e-6)
        }
        #expect(tf.min()! >= -1 && tf.max()! <= 1)
        #expect(Set(raw).count > 50, "a real picture, not a constant")
    }

    @Test("letterbox borders take the pad value; every float is written")
    func letterboxPad() throws {
        let dir = try TestEnv.tempDir("media-pad")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("wide.mp4").path
        try Fixtures.run("ffmpeg -v error -y -f lavfi -i color=c=white:size=160x40:rate=5 -frames:v 1 -c:v libx264 -pix_fmt yuv420p '\(path)'")
        let frame = try #require(try FrameSource(input: path).next())
        let pre = Preprocess(width: 32, height: 32, mode: .letterbox, mean: [0, 0, 0], std: [1, 1, 1], padValue: 114)
        var out = [Float](repeating: .nan, count: pre.floatsPerImage)
        try out.withUnsafeMutableBufferPointer { try TensorScaler(preprocess: pre).write(frame, to: $0.baseAddress!) }
        #expect(!out.contains { $0.isNaN })
        // 160x40 -> 32x8 centred: rows 0..11 and 20..31 are padding, rows 12..19 the white picture.
        for c in 0..<3 {
            #expect(out[c * 1024 + 0] == 114 && out[c * 1024 + 31 * 32 + 31] == 114)
            #expect(out[c * 1024 + 16 * 32 + 16] > 230)
        }
    }

    @Test("mid-stream size and pixel-format changes re-create the scaler; output equals a fresh scaler")
    func sizeChange() throws {
        let dir = try TestEnv.tempDir("media-size-change")
        defer { try? FileManager.default.removeItem(at: dir) }
        let d = dir.path
        try Fixtures.run("""
            cd '\(d)' && \
            ffmpeg -v error -y -f lavfi -i testsrc=size=96x64:rate=10:duration=1 -c:v libx264 -pix_fmt yuv420p s1.mkv && \
            ffmpeg -v error -y -f lavfi -i testsrc=size=128x80:rate=10:duration=1 -c:v libx264 -pix_fmt yuv444p s2.mkv && \
            ffmpeg -v error -y -f lavfi -i testsrc=size=128x80:rate=10:duration=1 -c:v libx264 -pix_fmt yuv420p s3.mkv && \
            printf "file s1.mkv\\nfile s2.mkv\\nfile s3.mkv\\n" > list.txt && \
            ffmpeg -v error -y -f concat -safe 0 -i list.txt -c copy both.mkv
            """)
        let (frames, _) = try Fixtures.decode(dir.appendingPathComponent("both.mkv").path)
        #expect(frames.count == 30)
        // Size changes after frame 9, pixel format alone after frame 19.
        #expect(frames.map { "\($0.width)x\($0.height) \($0.pixelFormat)" }
                == Array(repeating: "96x64 yuv420p", count: 10) + Array(repeating: "128x80 yuv444p", count: 10)
                + Array(repeating: "128x80 yuv420p", count: 10))
        let pre = Preprocess.minusOneToOne(size: 32)
        let shared = TensorScaler(preprocess: pre)
        for frame in frames {
            var a = [Float](repeating: 0, count: pre.floatsPerImage), b = a
            try a.withUnsafeMutableBufferPointer { try shared.write(frame, to: $0.baseAddress!) }
            try b.withUnsafeMutableBufferPointer { try TensorScaler(preprocess: pre).write(frame, to: $0.baseAddress!) }
            #expect(a == b, "frame \(frame.index) (\(frame.width)x\(frame.height))")
        }
    }

    @Test func geometry() {
        let crop = ScaleGeometry(sourceWidth: 640, sourceHeight: 480, width: 224, height: 224, mode: .centerCrop)
        #expect([crop.scaledWidth, crop.scaledHeight, crop.cropX, crop.cropY, crop.padX, crop.padY] as [Int] == [299, 224, 37, 0, 0, 0])
        let box = ScaleGeometry(sourceWidth: 640, sourceHeight: 272, width: 224, height: 224, mode: .letterbox)
        #expect([box.scaledWidth, box.scaledHeight, box.cropX, box.cropY, box.padX, box.padY] as [Int] == [224, 95, 0, 0, 0, 64])
        let same = ScaleGeometry(sourceWidth: 3, sourceHeight: 2, width: 30, height: 20, mode: .stretch)
        #expect(same.scaledWidth == 30 && same.scaledHeight == 20)
    }
}

@Suite("DecodedFrame: synthetic RGB frames")
struct SyntheticFrameTests {
    @Test("an RGB24 frame at model size passes through unchanged; 180° turns it")
    func identity() throws {
        let w = 7, h = 5
        let pixels = (0..<(w * h * 3)).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let frame = DecodedFrame(rgb24: pixels, width: w, height: h, index: 3, pts: 0.12)
        #expect(frame.width == w && frame.height == h && frame.pixelFormat == "rgb24" && frame.index == 3)
        let pre = TensorScalerTests.raw(w, h, .stretch)
        var out = [Float](repeating: -1, count: pre.floatsPerImage)
        try out.withUnsafeMutableBufferPointer { try TensorScaler(preprocess: pre).write(frame, to: $0.baseAddress!) }
        for y in 0..<h {
            for x in 0..<w {
                for c in 0..<3 { #expect(out[c * w * h + y * w + x] == Float(pixels[(y * w + x) * 3 + c])) }
            }
        }
        let turned = DecodedFrame(rgb24: pixels, width: w, height: h, rotation: 180)
        var rot = out
        try rot.withUnsafeMutableBufferPointer { try TensorScaler(preprocess: pre).write(turned, to: $0.baseAddress!) }
        for c in 0..<3 {
            #expect(Array(out[(c * w * h)..<((c + 1) * w * h)].reversed()) == Array(rot[(c * w * h)..<((c + 1) * w * h)]))
        }
        // 90° clockwise: the display is h wide and w tall; its top row is the stored left column, bottom up.
        let quarter = DecodedFrame(rgb24: pixels, width: w, height: h, rotation: 90)
        let upright = TensorScalerTests.raw(h, w, .stretch)
        var q = [Float](repeating: -1, count: upright.floatsPerImage)
        try q.withUnsafeMutableBufferPointer { try TensorScaler(preprocess: upright).write(quarter, to: $0.baseAddress!) }
        for dy in 0..<w {
            for dx in 0..<h {
                let (sx, sy) = (dy, h - 1 - dx)
                for c in 0..<3 { #expect(q[c * w * h + dy * h + dx] == Float(pixels[(sy * w + sx) * 3 + c])) }
            }
        }
    }
}

@Suite("Preprocess: presets and decoding")
struct PreprocessTests {
    @Test func presetsAndCodableRoundTrip() throws {
        let tf = Preprocess.minusOneToOne(size: 224)
        #expect(tf.width == 224 && tf.height == 224 && tf.mean == [127.5, 127.5, 127.5] && tf.std == [127.5, 127.5, 127.5])
        let net = Preprocess.imagenet(size: 160)
        #expect(net.mean == [123.675, 116.28, 103.53] && net.std == [58.395, 57.12, 57.375] && net.mode == .stretch)
        var boxed = net
        boxed.mode = .letterbox
        boxed.padValue = 114
        let back = try JSONDecoder().decode(Preprocess.self, from: JSONEncoder().encode(boxed))
        #expect(back == boxed)
        let minimal = #"{"width":8,"height":4,"mean":[0,0,0],"std":[1,1,1]}"#
        let decoded = try JSONDecoder().decode(Preprocess.self, from: Data(minimal.utf8))
        #expect(decoded.mode == .stretch && decoded.padValue == 0)
        #expect(ResizeMode(rawValue: "center-crop") == .centerCrop)
    }

    @Test("bad JSON throws instead of crashing", arguments: [
        #"{"width":0,"height":4,"mean":[0,0,0],"std":[1,1,1]}"#,
        #"{"width":8,"height":4,"mean":[0,0],"std":[1,1,1]}"#,
        #"{"width":8,"height":4,"mean":[0,0,0],"std":[1,0,1]}"#,
        #"{"width":8,"height":4,"mean":[0,0,0],"std":[1,1,1],"mode":"squash"}"#,
    ])
    func badJSON(json: String) {
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Preprocess.self, from: Data(json.utf8)) }
    }
}
