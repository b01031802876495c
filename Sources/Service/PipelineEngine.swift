import Foundation
import Inference
import Media
import Output
import Pipeline

/// The real engine: the model loaded through Pipeline's setup (ONNX or Keras H5, verified,
/// compiled for oneDNN and warmed up by `LoadedModel.load`). The daemon puts one
/// `InferenceService` on its runner, shared by the inbox and every stream.
public final class PipelineEngine: ServeEngine {
    /// The loaded model.
    public let loaded: LoadedModel
    public let runner: BatchRunner
    public var labels: [String]? { loaded.labels }

    init(loaded: LoadedModel) {
        self.loaded = loaded
        runner = loaded.runner
    }

    /// Loads and warms up the model named by `config` (`EngineLoader`).
    public static func load(_ config: ModelConfig) throws -> ServeEngine {
        let loaded = try LoadedModel.load(settings(config))
        try loaded.runner.prepare()
        return PipelineEngine(loaded: loaded)
    }

    /// The config's model part in the setup's terms (1-value mean/std apply to all three channels).
    public static func settings(_ c: ModelConfig) throws -> ModelSettings {
        var s = ModelSettings()
        s.modelPath = try ConfigCheck.resolveModel(c, configPath: nil)
        guard let p = Precision(rawValue: c.precision) else { throw ServiceError("unknown precision \(c.precision)") }
        s.precision = p
        s.threads = c.threads
        s.batchSize = c.batch
        s.width = c.width
        s.height = c.height
        s.mean = c.mean.map { $0.count == 1 ? Array(repeating: $0[0], count: 3) : $0 }
        s.std = c.std.map { $0.count == 1 ? Array(repeating: $0[0], count: 3) : $0 }
        if let r = c.resize {
            guard let mode = ResizeMode(rawValue: r) else { throw ServiceError("unknown resize mode \(r)") }
            s.resize = mode
        }
        s.labelsPath = c.labels
        return s
    }

    public func plan(input: String, live: Bool, sink: (() throws -> FrameSink)?) -> InputPlan {
        // Live streams decode with low delay (slice threads only), as `run` does for them.
        var source = SourceOptions()
        source.lowDelay = live
        return makeInputPlan(input: input, model: loaded, source: source, live: live, sink: sink)
    }
}
