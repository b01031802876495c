import Foundation
import Inference
import Media

/// The model and preprocessing settings, one type for the command line (`ModelFlags`, `--batch`)
/// and the service config (`[model]`): the same names and the same limits (`SettingRules`),
/// checked once by `validate()`. Nil fields come from the sidecar, then from the model itself,
/// then from framepipe's defaults.
public struct ModelSettings: Sendable, Equatable {
    /// Model file (ONNX, Keras H5 or TFLite); nil: `FRAMEPIPE_MODEL`, then the default model
    /// (`DefaultModel`). `--model`, `model.path`.
    public var modelPath: String?
    /// `--precision`, `model.precision`.
    public var precision: Precision = .fp32
    /// oneDNN (OpenMP) threads; nil: oneDNN's default (all cores). `--threads`, `model.threads`.
    public var threads: Int?
    /// Largest batch the engine is compiled for. `--batch`, `model.batch`.
    public var batchSize = 16
    /// Input size; `--size S` and `model.size` set both, `model.width`/`model.height` one.
    public var width: Int?
    public var height: Int?
    /// Per RGB channel, on 0...255 pixel values (always three once set through `setMean`/`setStd`
    /// or decoded). `--mean`, `model.mean`.
    public var mean: [Float]?
    /// `--std`, `model.std`.
    public var std: [Float]?
    /// `--resize`, `model.resize`.
    public var resize: ResizeMode?
    /// A text file with one class name per line, in output order. `--labels`, `model.labels`.
    public var labelsPath: String?

    public init() {}

    /// Checks every field against its rule (`SettingRules`); throws the first `SettingError`.
    public func validate() throws {
        try SettingRules.batch.validate(batchSize)
        try SettingRules.threads.validate(threads)
        if let width, let height, width == height {
            try SettingRules.size.validate(width)
        } else {
            try SettingRules.width.validate(width)
            try SettingRules.height.validate(height)
        }
        if let mean { _ = try SettingRules.triple(mean, SettingRules.mean, positive: false, given: Self.list(mean)) }
        if let std { _ = try SettingRules.triple(std, SettingRules.std, positive: true, given: Self.list(std)) }
    }

    /// Sets `mean` from one value or three (R,G,B), checked.
    public mutating func setMean(_ values: [Float], given: String? = nil) throws {
        mean = try SettingRules.triple(values, SettingRules.mean, positive: false, given: given ?? Self.list(values))
    }

    /// Sets `std` from one value or three (R,G,B), checked (positive).
    public mutating func setStd(_ values: [Float], given: String? = nil) throws {
        std = try SettingRules.triple(values, SettingRules.std, positive: true, given: given ?? Self.list(values))
    }

    /// Parses `--mean`/`--std` text: one number or three comma-separated numbers.
    public static func parseNumbers(_ text: String, _ name: SettingName) throws -> [Float] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map {
            Float($0.trimmingCharacters(in: .whitespaces))
        }
        guard !parts.isEmpty, parts.allSatisfy({ $0?.isFinite == true }) else {
            throw SettingError(name, "takes one number or three numbers, R,G,B (got \(text))")
        }
        return parts.map { $0! }
    }

    static func list(_ v: [Float]) -> String {
        v.map { $0 == $0.rounded() && abs($0) < 1e7 ? String(Int($0)) : "\($0)" }.joined(separator: ",")
    }
}

/// Sampling, stream choice, decoder threads and input limits, one type for the command line
/// (`SamplingFlags`: `--every`, `--fps`...) and the service config (`[sampling]`), with the same
/// names and limits (`SettingRules`).
public struct SamplingSettings: Sendable, Equatable {
    /// Container stream index; nil: the best video stream. `--stream`, `sampling.stream`.
    public var stream: Int?
    /// Keep every Nth frame (after the other rules). `--every`, `sampling.every`.
    public var every = 1
    /// N frames evenly spaced over the input's duration (seeking where it can). `--frames-per-input`,
    /// `sampling.frames_per_input`.
    public var framesPerInput: Int?
    /// At most F frames per second, by timestamp. `--fps`, `sampling.fps`.
    public var fps: Double?
    /// Key frames only (the others are not decoded). `--keyframes`, `sampling.keyframes`.
    public var keyframes = false
    /// Seconds (pts): frames with start <= pts < end. `--start`/`--end`, `sampling.start`/`.end`.
    public var start: Double?
    public var end: Double?
    /// 0: FFmpeg chooses. `--decoder-threads`, `sampling.decoder_threads`.
    public var decoderThreads = 0
    /// Largest frame accepted (width x height). `--max-pixels`, `sampling.max_pixels`.
    public var maxPixels = SourceOptions.defaultMaxPixels
    /// Seconds opening and each read may wait; 0: no limit. `--io-timeout`, `sampling.io_timeout`.
    public var ioTimeout = SourceOptions.defaultIOTimeout
    /// Keep the first frame and each scene change scoring at least this (0...1), judged on the
    /// scaled sample; nil: off. `--scene`, `sampling.scene` (`run` only: `frames` scales nothing).
    public var scene: Double?
    /// With `scene`: seconds at least between two kept frames. `--scene-min-gap`, `sampling.scene_min_gap`.
    public var sceneMinGap = 0.0

    public init() {}

    /// Checks every field against its rule; throws the first `SettingError`.
    public func validate() throws {
        try SettingRules.stream.validate(stream)
        try SettingRules.every.validate(every)
        try SettingRules.framesPerInput.validate(framesPerInput)
        try SettingRules.fps.validate(fps)
        try SettingRules.start.validate(start)
        try SettingRules.end.validate(end)
        try SettingRules.checkWindow(start: start, end: end)
        try SettingRules.decoderThreads.validate(decoderThreads)
        try SettingRules.maxPixels.validate(maxPixels)
        try SettingRules.ioTimeout.validate(ioTimeout)
        try SettingRules.scene.validate(scene)
        try SettingRules.sceneMinGap.validate(sceneMinGap)
        try SettingRules.checkScene(scene: scene, minGap: sceneMinGap, framesPerInput: framesPerInput)
    }

    /// The sampling part alone.
    public var sampling: SamplingOptions {
        SamplingOptions(every: every, fps: fps, keyframesOnly: keyframes, start: start, end: end,
                        framesPerInput: framesPerInput)
    }

    /// The options for `FrameSource` reading `input`; a live input (rtsp, udp, ...) or `live`
    /// decodes with low delay, so each frame is emitted as soon as it is decoded.
    public func sourceOptions(for input: String, live: Bool? = nil) -> SourceOptions {
        var options = SourceOptions(streamIndex: stream, decoderThreads: decoderThreads, sampling: sampling,
                                    maxPixels: maxPixels, ioTimeout: ioTimeout == 0 ? nil : ioTimeout)
        options.lowDelay = live ?? isLiveInput(input)
        options.wallClock = options.lowDelay
        return options
    }
}
