import Foundation
import Inference
import Testing
import TestSupport
@testable import Pipeline

/// Where framepipe looks for its default model, and how it tells model files apart.
@Suite struct DefaultModelLookupTests {
    let name = DefaultModel.fileName

    @Test func searchOrderIsEnvironmentThenXDGThenUsrLocalThenCheckout() throws {
        let exe = TestEnv.packageRoot.appendingPathComponent(".build/debug/framepipe").path
        let paths = DefaultModel.searchPaths(environment: ["FRAMEPIPE_MODEL": "/m/x.onnx", "XDG_DATA_HOME": "/data", "HOME": "/home/u"],
                                             executable: exe)
        #expect(paths == ["/m/x.onnx", "/data/framepipe/models/\(name)", "/usr/local/share/framepipe/models/\(name)",
                          TestEnv.packageRoot.appendingPathComponent("models/\(name)").path])
    }

    @Test func xdgDataHomeDefaultsToLocalShareAndIgnoresRelativeValues() {
        let expected = ["/home/u/.local/share/framepipe/models/\(name)", "/usr/local/share/framepipe/models/\(name)"]
        #expect(DefaultModel.searchPaths(environment: ["HOME": "/home/u"], executable: "/nowhere/bin/framepipe") == expected)
        #expect(DefaultModel.searchPaths(environment: ["HOME": "/home/u", "XDG_DATA_HOME": "rel", "FRAMEPIPE_MODEL": ""],
                                         executable: "/nowhere/bin/framepipe") == expected)
    }

    @Test func checkoutIsFoundFromTheExecutablesRealPath() throws {
        let dir = try TestEnv.tempDir("lookup-checkout")
        defer { try? FileManager.default.removeItem(at: dir) }
        let fm = FileManager.default
        let bin = dir.appendingPathComponent("repo/.build/x86_64-unknown-linux-gnu/release")
        try fm.createDirectory(at: bin, withIntermediateDirectories: true)
        try fm.createDirectory(at: dir.appendingPathComponent("repo/models"), withIntermediateDirectories: true)
        try Data().write(to: dir.appendingPathComponent("repo/Package.swift"))
        try Data("x".utf8).write(to: bin.appendingPathComponent("framepipe"))
        // Called through a symlink elsewhere (e.g. /usr/local/bin/framepipe -> the build).
        let link = dir.appendingPathComponent("framepipe-link")
        try fm.createSymbolicLink(at: link, withDestinationURL: bin.appendingPathComponent("framepipe"))
        #expect(DefaultModel.checkoutModels(executable: link.path) == dir.appendingPathComponent("repo/models").resolvingSymlinksInPath().path)
        // No Package.swift above: no checkout.
        #expect(DefaultModel.checkoutModels(executable: "/usr/bin/env") == nil)
    }

    @Test func locatePicksTheFirstReadableFileAndAnExplicitEnvironmentPath() throws {
        let dir = try TestEnv.tempDir("lookup-locate")
        defer { try? FileManager.default.removeItem(at: dir) }
        let models = dir.appendingPathComponent("framepipe/models")
        try FileManager.default.createDirectory(at: models, withIntermediateDirectories: true)
        let env = ["XDG_DATA_HOME": dir.path, "HOME": dir.path]
        // An old default.h5 (the dog model of earlier versions) is not the default any more.
        try Data("x".utf8).write(to: models.appendingPathComponent("default.h5"))
        let before = DefaultModel.locate(environment: env, executable: "/nowhere/framepipe")
        #expect(before == nil || before == "/usr/local/share/framepipe/models/\(name)")
        let installed = models.appendingPathComponent(name).path
        try Data("x".utf8).write(to: URL(fileURLWithPath: installed))
        #expect(DefaultModel.locate(environment: env, executable: "/nowhere/framepipe") == installed)
        // FRAMEPIPE_MODEL wins even when missing: loading it then names the user's path.
        let missing = dir.appendingPathComponent("missing.onnx").path
        #expect(DefaultModel.locate(environment: env.merging(["FRAMEPIPE_MODEL": missing]) { $1 }) == missing)
    }

    @Test func theCommittedDefaultHasItsSidecarLabelsAndNotice() throws {
        let model = TestEnv.packageRoot.appendingPathComponent("models/\(name)").path
        let sidecar = try #require(try ModelSidecar.load(forModel: model))
        #expect(sidecar.width == 224 && sidecar.height == 224 && sidecar.resize == "stretch")
        #expect(sidecar.mean == [128, 128, 128] && sidecar.std == [128, 128, 128])
        #expect(sidecar.embedding == "features" && sidecar.logits == "logits")
        let labels = try String(contentsOfFile: TestEnv.packageRoot.appendingPathComponent("models/imagenet_labels.txt").path,
                                encoding: .utf8).split(separator: "\n")
        #expect(labels.count == 1001 && labels[0] == "background" && labels[286] == "Egyptian cat")
        let notice = try String(contentsOfFile: TestEnv.packageRoot.appendingPathComponent("models/NOTICE").path, encoding: .utf8)
        #expect(notice.contains("Apache License, Version 2.0") && notice.contains("Coral"))
    }
}

/// `ModelFormat.detect`: the importer is chosen by content; what is no model is named.
@Suite struct ModelFormatTests {
    func write(_ bytes: [UInt8], _ name: String, in dir: URL) throws -> String {
        let path = dir.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func message(_ path: String) -> String {
        do { return "format \(try ModelFormat.detect(path: path).rawValue)" } catch { return "\(error)" }
    }

    @Test func recognisesEachFormatWhateverItsName() throws {
        let dir = try TestEnv.tempDir("model-format")
        defer { try? FileManager.default.removeItem(at: dir) }
        let tfl = try TFLiteFixtures.bytes("tiny_float.tflite")
        #expect(message(try write(tfl, "model.onnx", in: dir)) == "format TFLite")
        #expect(message(try write([0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A] + [UInt8](repeating: 0, count: 64), "weights.bin", in: dir))
                == "format Keras H5")
        #expect(message(try write([0x08, 0x07, 0x12, 0x07] + Array("pytorch".utf8), "m.tflite", in: dir)) == "format ONNX")
        if TestEnv.hasAssets {
            #expect(message(TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx")) == "format ONNX")
        }
    }

    @Test func namesWhatIsNotAModel() throws {
        let dir = try TestEnv.tempDir("model-format-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(message(dir.path) == "\(dir.path): is a directory, not a model file (ONNX, Keras H5 or TFLite)")
        #expect(message("/dev/null") == "/dev/null: is a character device, not a model file")
        let missing = dir.appendingPathComponent("nope.onnx").path
        #expect(message(missing) == "\(missing): model file not found")
        let empty = try write([], "empty.tflite", in: dir)
        #expect(message(empty) == "\(empty): is empty (0 bytes), not a model file")
        let text = try write(Array("<html>not found</html>\n".utf8), "model.h5", in: dir)
        #expect(message(text) == "\(text): is a text file (starts with \"<html>not found</html>\"): no HDF5 signature, so not a Keras H5 model, not a model file (ONNX, Keras H5 or TFLite)")
        // A GraphDef: field 1 (node) holding a NodeDef whose field 1 is its name.
        let graphDef = try write([0x0A, 0x1A, 0x0A, 0x05] + Array("input".utf8) + [0x12, 0x0B] + Array("Placeholder".utf8) + [0x2A, 0x00],
                                 "frozen.pb", in: dir)
        #expect(message(graphDef).hasPrefix("\(graphDef): TensorFlow GraphDef is not supported; convert with tf2onnx"))
        let saved = dir.appendingPathComponent("saved")
        try FileManager.default.createDirectory(at: saved, withIntermediateDirectories: true)
        _ = try write([0x08, 0x01, 0x12, 0x00], "saved/saved_model.pb", in: dir)
        #expect(message(saved.path).contains("TensorFlow SavedModel folder is not supported; convert it with tf2onnx"))
        let zip = try write([0x50, 0x4B, 0x03, 0x04, 0x14, 0x00], "model.keras", in: dir)
        #expect(message(zip).contains("is a ZIP archive"))
        let junk = try write([0xFF, 0x00, 0x13, 0x37, 0x00, 0x01, 0x02, 0x03], "model.onnx", in: dir)
        #expect(message(junk) == "\(junk): unknown model format (first bytes ff 00 13 37 00 01 02 03); framepipe reads ONNX, Keras H5 (HDF5) and TFLite (TFL3) files")
    }
}
