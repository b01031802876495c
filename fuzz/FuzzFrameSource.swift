// libFuzzer entry point over framepipe's decode path: FrameSource(data:) reads the bytes through a
// custom AVIOContext (no protocol, no playlist may be opened from inside them), then every frame is
// decoded and scaled to a (small) tensor as `framepipe run` would, under small caps so the fuzzer spends its time on parsing.
// Built by fuzz/run (swiftc -sanitize=fuzzer,address), together with Sources/Media in one module.

/// Decodes one fuzz input; never throws out, never crashes on bad data (that is what is tested).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrameSourceOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = size > 0 && data != nil ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    fuzzDecode(bytes)
    return 0
}

/// FFmpeg's log is silenced once (it would drown libFuzzer's output).
private let silenceFFmpeg: Void = FFmpegLogLevel.set(.quiet)

/// Opens, decodes and scales one input held in memory.
func fuzzDecode(_ bytes: [UInt8]) {
    _ = silenceFFmpeg
    let options = SourceOptions(decoderThreads: 1, maxPixels: 1 << 20, ioTimeout: nil)
    guard let source = try? FrameSource(data: bytes, name: "fuzz-input", options: options) else { return }
    let scaler = TensorScaler(preprocess: .minusOneToOne(size: 32), honoursRotation: true)
    let tensor = UnsafeMutablePointer<Float>.allocate(capacity: scaler.preprocess.floatsPerImage)
    defer { tensor.deallocate() }
    var frames = 0
    do {
        while let frame = try source.next() {
            // Touch what the pipeline reads from each frame.
            _ = (frame.width, frame.height, frame.pts, frame.index)
            try? scaler.write(frame, to: tensor)
            frames += 1
            if frames >= 64 { source.cancel() }
        }
    } catch {}
}
