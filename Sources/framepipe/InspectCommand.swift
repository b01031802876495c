import ArgumentParser
import Foundation
import Inference
import KerasImport
import Media
import Output
import Pipeline

/// `framepipe inspect MODEL`: inputs, outputs, operators, parameters, MACs, preprocessing.
struct InspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Describe a model: inputs, outputs, op counts, parameters, MACs and expected preprocessing.",
        discussion: """
            Also compiles the model for this CPU and lists each layer's oneDNN implementation (the \
            instruction set follows the CPU, capped by ONEDNN_MAX_CPU_ISA); layers that fell back to a \
            reference kernel are named on stderr.
            """)

    @Argument(help: "Model file (ONNX, Keras H5 or TFLite); default: $FRAMEPIPE_MODEL, then the default model (see `framepipe models`).")
    var modelPath: String?
    @Flag(help: "Print one JSON object instead of text.") var json = false
    @Option(parsing: .unconditional, help: "Batch size to compile for (implementations can differ by batch).") var batch = 1
    @Option(help: "Precision to compile for: fp32 or bf16.") var precision: Precision = .fp32

    func validate() throws {
        try FlagRules.batch.check(batch)
    }

    func run() async throws {
        let model = try ModelPath.resolve(modelPath)
        let imported: Graph, m: Model
        do {
            imported = try importModelGraph(model)
            m = try Model(graph: imported, source: model)
        } catch {
            throw Failure.model(error, path: model)
        }
        let counts = imported.opCounts.sorted { $0.key < $1.key }
        let fused = m.graph.opCounts.sorted { $0.key < $1.key }
        let engine: Engine, layers: [CompiledLayer]
        do {
            engine = try Engine(model: m, precision: precision, maxBatch: batch)
            layers = try engine.compiledLayers(batch: batch)
        } catch {
            throw Failure.model(error, path: model)
        }
        warnAboutReferenceKernels(engine)
        if json {
            func obj(_ d: [(key: String, value: Int)]) -> String {
                "{" + d.map { "\(JSON.quoted($0.key)):\($0.value)" }.joined(separator: ",") + "}"
            }
            let outputs = m.graph.outputs.map { "{\"name\":\(JSON.quoted($0.name)),\"shape\":\(m.shapes[$0.name]!.count == 1 ? "[-1,\(m.shapes[$0.name]![0])]" : "\([-1] + m.shapes[$0.name]!)")}" }
            try StdoutText.line("{\"model\":\(JSON.quoted(model)),\"input\":{\"name\":\(JSON.quoted(m.inputName)),\"shape\":\([-1] + m.inputShape)},"
                  + "\"outputs\":[\(outputs.joined(separator: ","))],\"embedding\":\(JSON.quoted(m.embeddingOutput)),\"embedding_dim\":\(m.embeddingDim),"
                  + "\"logits\":\(m.logitsOutput.map(JSON.quoted) ?? "null"),\"classes\":\(m.classCount),"
                  + "\"ops\":\(obj(counts)),\"ops_after_passes\":\(obj(fused)),\"parameters\":\(m.graph.parameterCount),"
                  + "\"macs\":\(m.macsPerImage),\"preprocessing\":\(JSON.quoted(m.expectedPreprocessing)),"
                  + "\"isa\":\"\(Engine.cpuISA)\",\"onednn\":\"\(Engine.oneDNNVersion)\",\"precision\":\"\(precision.rawValue)\",\"batch\":\(batch),"
                  + "\"activations\":\"\(engine.plan.activations.rawValue)\",\"layers\":[\(layers.map(layerJSON).joined(separator: ","))],"
                  + "\"reference_layers\":[\(engine.referenceLayers.map(layerJSON).joined(separator: ","))]}")
            return
        }
        try StdoutText.line("model: \(model)")
        try StdoutText.line("input: \(m.inputName) [N, \(m.inputShape.map(String.init).joined(separator: ", "))] float32 NCHW")
        for out in m.graph.outputs {
            var role = ""
            if out.name == m.embeddingOutput { role = " (embedding)" }
            if out.name == m.logitsOutput { role = " (logits)" }
            try StdoutText.line("output: \(out.name) [N, \(m.shapes[out.name]!.map(String.init).joined(separator: ", "))]\(role)")
        }
        if !m.graph.outputs.contains(where: { $0.name == m.embeddingOutput }) {
            try StdoutText.line("embedding: \(m.embeddingOutput) (\(m.embeddingDim) values, the classifier's input)")
        }
        try StdoutText.line("ops: " + counts.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        try StdoutText.line("ops after passes: " + fused.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        try StdoutText.line("parameters (batch norms folded): \(m.graph.parameterCount) (\(String(format: "%.2f", Double(m.graph.parameterCount) / 1e6)) M)")
        try StdoutText.line("MACs per image: \(m.macsPerImage) (\(String(format: "%.1f", Double(m.macsPerImage) / 1e6)) M)")
        try StdoutText.line("runtime: \(m.runtimeSummary)")
        try StdoutText.line("classes: \(m.classCount)")
        try StdoutText.line("preprocessing (by layout): \(m.expectedPreprocessing)")
        try StdoutText.line("compiled for \(Engine.cpuISA) (oneDNN \(Engine.oneDNNVersion)), \(precision.rawValue), batch \(batch), "
              + "\(engine.plan.activations.rawValue) activations: \(layers.count) primitives")
        let width = layers.map(\.layer.count).max() ?? 0
        for l in layers {
            let pad = String(repeating: " ", count: width - l.layer.count)
            try StdoutText.line("  \(l.layer)\(pad)  \(l.kind.rawValue.padding(toLength: 13, withPad: " ", startingAt: 0)) \(l.implementation)")
        }
        let sidecar: ModelSidecar?, preprocess: Preprocess?
        do {
            sidecar = try ModelSidecar.load(forModel: model)
            preprocess = try sidecar.map { _ in try ModelInputSetup(model: m, path: model, settings: ModelSettings()).preprocess }
        } catch {
            throw Failure.model(error, path: model)
        }
        if let side = sidecar, let p = preprocess {
            try StdoutText.line("sidecar \(ModelSidecar.path(forModel: model)): \(p.width)x\(p.height), resize \(p.mode.rawValue), "
                  + "mean \(p.mean), std \(p.std), labels \(side.labels?.count ?? 0)\(side.labelsFile.map { " (\($0))" } ?? "")")
        }
    }
}
