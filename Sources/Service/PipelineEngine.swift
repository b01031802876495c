import Foundation
import Output
import Pipeline

/// The real engine: the model loaded through Pipeline's setup (ONNX or Keras, compiled for oneDNN).
public enum PipelineEngine {
    /// Loads and warms up the model named by `config`.
    public static func load(_ config: ModelConfig) throws -> ServeEngine {
        throw ServiceError("model setup is not available in this build yet")
    }
}
