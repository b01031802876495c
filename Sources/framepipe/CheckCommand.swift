import ArgumentParser
import Foundation
import Inference
import Media
import Output
import Pipeline

/// `framepipe check`: the effective preprocessing and the top-k for still images, to verify a model.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Show a model's effective preprocessing and its top-k labels for still images.",
        discussion: "Images are read through FFmpeg (JPEG, PNG, BMP, ...). Prints one JSON object per image.")

    @OptionGroup var model: ModelFlags

    @Option(name: .customLong("top-k"), parsing: .unconditional, help: "Labels per image.")
    var topK = 5

    @Argument(help: "Image files.")
    var images: [String]

    @Option(name: .customLong("io-timeout"), parsing: .unconditional, help: ArgumentHelp(
        "Seconds that opening an image may wait for data (URLs, FIFOs; 0 = no limit).", valueName: "seconds"))
    var ioTimeout: Double = SourceOptions.defaultIOTimeout

    func validate() throws {
        if images.isEmpty { throw Failure.usage("no image given") }
        if images.contains("") { throw Failure.usage("an image is an empty string") }
        try FlagRules.topK.check(topK)
        try FlagRules.ioTimeout.check(ioTimeout)
    }

    func run() throws {
        MediaCLI.quietFFmpeg()
        let loaded = try model.load(batchSize: 1)
        let p = loaded.preprocess
        var info = "framepipe: model \(loaded.path)\n"
        info += "framepipe: input \(p.width)x\(p.height) RGB, resize \(p.mode.rawValue), mean \(p.mean), std \(p.std)\n"
        info += "framepipe: classes \(loaded.runner.classCount), embedding \(loaded.runner.embeddingDim)-d\n"
        for key in loaded.provenance.keys.sorted() { info += "framepipe:   \(key): \(loaded.provenance[key]!)\n" }
        FileHandle.standardError.write(Data(info.utf8))

        let runner = loaded.runner
        let input = UnsafeMutablePointer<Float>.allocate(capacity: runner.sampleSize)
        let emb = UnsafeMutablePointer<Float>.allocate(capacity: max(1, runner.embeddingDim))
        let logits = UnsafeMutablePointer<Float>.allocate(capacity: max(1, runner.classCount))
        defer { input.deallocate(); emb.deallocate(); logits.deallocate() }
        let scaler = TensorScaler(preprocess: p)
        var failed = 0
        let out = LineWriter()
        for image in images {
            do {
                let source = try FrameSource(input: image, options: SourceOptions(ioTimeout: ioTimeout == 0 ? nil : ioTimeout))
                guard let frame = try source.next() else {
                    throw Failure(.input, subject: image, operation: "decode", "no picture could be decoded")
                }
                try scaler.write(frame, to: input)
                try runner.run(input: input, count: 1, embeddings: runner.embeddingDim > 0 ? emb : nil,
                               logits: runner.classCount > 0 ? logits : nil)
                var w = JSONObjectWriter()
                w.field("v", outputSchemaVersion)
                w.field("input", image)
                w.field("width", frame.width)
                w.field("height", frame.height)
                if runner.classCount > 0 {
                    let labels = topLabels(UnsafeBufferPointer(start: logits, count: runner.classCount),
                                           names: loaded.labels, k: topK)
                    w.field("labels", rawJSON: RecordEncoder.labelsJSON(labels))
                }
                if runner.embeddingDim > 0 {
                    var norm: Float = 0
                    for i in 0..<runner.embeddingDim { norm += emb[i] * emb[i] }
                    w.field("embedding_norm", norm.squareRoot())
                }
                try out.write(w.finishLine())
            } catch is LineWriter.Closed {
                return  // the reader went away (`| head -1`): done, quietly
            } catch {
                Report.line(Failure.input(error, image).description)
                failed += 1
            }
        }
        if failed > 0 { throw ExitCode(ExitStatus.inputFailed.rawValue) }  // each failure already reported
    }
}
