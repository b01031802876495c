import Foundation
import Testing
import Output
import TestSupport

@Suite struct OutputTests {
    @Test func jsonEscapesAndNumbers() throws {
        var w = JSONObjectWriter()
        w.field("s", "a\"b\\c\n\u{01}é")
        w.field("f", Float(0.78))
        w.field("nan", Double.nan)
        w.field("i", -3)
        let line = w.finishLine()
        #expect(line.last == UInt8(ascii: "\n"))
        let obj = try JSONSerialization.jsonObject(with: Data(line.dropLast())) as! [String: Any]
        #expect(obj["s"] as? String == "a\"b\\c\n\u{01}é")
        #expect((obj["f"] as? Double).map { abs($0 - 0.78) < 1e-6 } == true)
        #expect(obj["nan"] is NSNull)
        #expect(obj["i"] as? Int == -3)
    }

    @Test func base64EmbeddingDecodesToSameFloats() throws {
        let e: [Float] = [0.5, -1.25, 3.0e-7, 1234.5]
        let line = e.withUnsafeBufferPointer { buf in
            RecordEncoder.frameLine(
                FrameRecord(input: "x", frame: 1, pts: 0.04, keyframe: false, labels: [], embedding: buf),
                options: EmitOptions(labels: false, embedding: true, embeddingEncoding: .base64))
        }
        let obj = try JSONSerialization.jsonObject(with: Data(line)) as! [String: Any]
        let data = try #require(Data(base64Encoded: obj["embedding_b64"] as! String))
        let floats = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        #expect(floats == e)
        #expect(obj["v"] as? Int == outputSchemaVersion)
        #expect(obj["labels"] == nil)
    }

    @Test func namingStaysInsideTheFolder() {
        for hostile in ["../../etc/passwd", "/abs/path/clip.mp4", "..", ".hidden.mp4", "a/b/../c.mkv",
                        "rtsp://cam.local:554/live/stream?x=1", "-", "", "weird name;rm -rf.mp4"] {
            let s = OutputNaming.stem(for: hostile)
            #expect(!s.isEmpty && !s.contains("/") && !s.hasPrefix(".") && s != "..", "\(hostile) -> \(s)")
        }
        #expect(OutputNaming.stem(for: "/videos/clip.mp4") == "clip")
        #expect(OutputNaming.stem(for: "-") == "stdin")
        var n = OutputNaming()
        #expect([n.uniqueStem(for: "a/x.mp4"), n.uniqueStem(for: "b/x.mp4"), n.uniqueStem(for: "x.mkv")]
                == ["x", "x-2", "x-3"])
    }

    @Test func csvQuotesFieldsWithCommas() {
        #expect(CSV.row(["1", "dragonfly, darning needle", "say \"hi\""]) ==
                "1,\"dragonfly, darning needle\",\"say \"\"hi\"\"\"\n")
    }

    @Test func atomicFileAppearsOnlyOnCommit() throws {
        let dir = try TestEnv.tempDir()
        let final = dir.appendingPathComponent("out.jsonl").path
        let f = try AtomicFile(finalPath: final)
        try f.write(Array("hello\n".utf8))
        try f.flush()
        #expect(!FileManager.default.fileExists(atPath: final))
        #expect(FileManager.default.fileExists(atPath: f.tempPath))
        try f.commit()
        #expect(try String(contentsOfFile: final, encoding: .utf8) == "hello\n")
        #expect(!FileManager.default.fileExists(atPath: f.tempPath))

        let g = try AtomicFile(finalPath: dir.appendingPathComponent("never.jsonl").path)
        try g.write([1, 2, 3]); try g.flush()
        g.abandon()
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        #expect(left == ["out.jsonl"])
        // A leftover from a killed run is recognised and removed.
        _ = FileManager.default.createFile(atPath: dir.appendingPathComponent(".x.npy.partial-1-1").path, contents: Data())
        #expect(AtomicFile.removeLeftovers(in: dir.path) == [".x.npy.partial-1-1"])
    }

    @Test func lineWriterReportsFullDeviceClearly() throws {
        // /dev/full fails every write with ENOSPC: a clear error, not a crash or a silent loss.
        let full = open("/dev/full", O_WRONLY)
        try #require(full >= 0)
        defer { close(full) }
        let w = LineWriter(fd: full)
        let error = #expect(throws: OutputError.self) { try w.write(Array("line\n".utf8)) }
        #expect(error?.description.contains("No space left on device") == true)
    }

    @Test(.enabled(if: TestEnv.hasPython))
    func npyLoadsInNumpyWithShapeAndValues() throws {
        let dir = try TestEnv.tempDir()
        let path = dir.appendingPathComponent("e.npy").path
        let w = try NPYWriter(path: path, dim: 1280)
        var row = [Float](repeating: 0, count: 1280)
        for r in 0..<3 {
            for i in 0..<1280 { row[i] = Float(r * 1280 + i) * 0.5 }
            try row.withUnsafeBufferPointer { try w.append($0) }
        }
        try w.finish()
        let script = """
        import numpy as np
        a = np.load('\(path)')
        assert a.dtype == np.float32 and a.shape == (3, 1280), (a.dtype, a.shape)
        assert (a.ravel() == np.arange(3 * 1280, dtype=np.float32) * 0.5).all()
        print('ok')
        """
        let r = try runProcess(TestEnv.python, ["-c", script])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "ok")
    }
}
