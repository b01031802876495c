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

    /// The config's model settings (the type `run` uses too) with the model file resolved.
    public static func settings(_ c: ModelConfig) throws -> ModelSettings {
        var s = c
        s.modelPath = try ConfigCheck.resolveModel(c, configPath: nil)
        return s
    }

    public func plan(input: String, live: Bool, sampling: SamplingSettings, sink: (() throws -> FrameSink)?) -> InputPlan {
        // Live streams decode with low delay (slice threads only), as `run` does for them.
        let source = sampling.sourceOptions(for: input, live: live)
        var plan = makeInputPlan(input: input, model: loaded, source: source, live: live, sink: sink)
        // `sampling.scene`: judged on the scaled sample, with this model's std (as `run --scene`).
        if let t = sampling.scene { plan.sampleScenes(threshold: t, minGap: sampling.sceneMinGap, std: loaded.preprocess.std) }
        return plan
    }
}
