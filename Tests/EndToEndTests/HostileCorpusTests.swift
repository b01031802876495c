import Foundation
import Testing
import TestSupport

/// Issue 7, part 1: a mutation corpus generated at test time (never committed) from a shared real
/// video and small lavfi clips, run through `framepipe run` several inputs at a time with --jobs 2.
/// Every file must end with frames or exactly one clear error record: no crash, no hang, no partial
/// line, and every good frame before the damage still emitted (checked exactly for truncations).
@Suite(.enabled(if: TestEnv.hasAssets), .serialized)
struct HostileCorpusTests {
    static let model = TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx")
    static let carphone = TestEnv.asset("videos/carphone_pristine.mp4")

    /// One corpus file and, for truncations, how many whole packets precede the cut.
    struct Case {
        var path: String
        var kind: String
        /// Frames whose packets lie wholly before the damage (truncations of an indexed MP4 only).
        var completePackets: Int? = nil
    }

    func sh(_ command: String) throws {
        let r = try shell(command)
        guard r.status == 0 else { throw HostileError("`\(command)` failed: \(r.stderrText)") }
    }

    /// (pos, size) of each video packet in file order, from ffprobe.
    func packets(_ path: String) throws -> [(pos: Int, size: Int)] {
        let r = try shell("ffprobe -v error -select_streams v:0 -show_entries packet=pos,size -of csv=p=0 '\(path)'")
        return r.stdoutText.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ",").compactMap { Int($0) }
            return f.count == 2 ? (f[0], f[1]) : nil
        }.sorted { $0.pos < $1.pos }
    }

    func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

    func write(_ bytes: [UInt8], _ path: String) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }

    /// Offset of the first occurrence of a 4-character box name (for header patches).
    func find(_ tag: String, in b: [UInt8]) -> Int? {
        let t = Array(tag.utf8)
        guard b.count >= 4 else { return nil }
        for i in 0...(b.count - 4) where b[i] == t[0] && b[i + 1] == t[1] && b[i + 2] == t[2] && b[i + 3] == t[3] { return i }
        return nil
    }

    func makeCorpus(in dir: URL) throws -> [Case] {
        let d = dir.path
        // Bases: an indexed MP4 without B-frames (exact truncation expectations), the real carphone
        // video made faststart (B-frames), an MPEG-4 Part 2 MKV, an H.264 MPEG-TS, and two TS clips
        // of different sizes for a mid-stream splice.
        try sh("""
            cd '\(d)' && \
            ffmpeg -v error -y -f lavfi -i testsrc2=size=128x96:rate=25 -frames:v 50 -c:v libx264 -bf 0 -g 10 -pix_fmt yuv420p -movflags +faststart a.mp4 && \
            ffmpeg -v error -y -i '\(Self.carphone)' -c copy -movflags +faststart b.mp4 && \
            ffmpeg -v error -y -f lavfi -i testsrc=size=96x64:rate=25 -frames:v 30 -c:v mpeg4 -g 10 c.mkv && \
            ffmpeg -v error -y -f lavfi -i testsrc2=size=96x64:rate=25 -frames:v 30 -c:v libx264 -g 10 -pix_fmt yuv420p -f mpegts d.ts && \
            ffmpeg -v error -y -f lavfi -i testsrc=size=160x120:rate=25 -frames:v 20 -c:v libx264 -g 10 -pix_fmt yuv420p -f mpegts e.ts
            """)
        let a = try bytes("\(d)/a.mp4"), b = try bytes("\(d)/b.mp4"), c = try bytes("\(d)/c.mkv")
        let dts = try bytes("\(d)/d.ts"), ets = try bytes("\(d)/e.ts")
        var cases: [Case] = []
        var rng = SplitMix(seed: 0x7001)
        func add(_ kind: String, _ ext: String, _ data: [UInt8], complete: Int? = nil) throws {
            let path = "\(d)/\(String(format: "%03d", cases.count))-\(kind).\(ext)"
            try write(data, path)
            cases.append(Case(path: path, kind: kind, completePackets: complete))
        }

        // Truncations at many offsets.
        for (name, data, ext, probe) in [("a", a, "mp4", true), ("b", b, "mp4", true), ("c", c, "mkv", false), ("d", dts, "ts", false)] {
            let pk = probe ? try packets("\(d)/\(name).\(ext)") : []
            let cuts = name == "a" ? 12 : name == "b" ? 6 : 4
            for k in 1...cuts {
                let at = data.count * k / (cuts + 1) + rng.below(97)
                let complete = probe ? pk.filter { $0.pos + $0.size <= at }.count : nil
                try add("trunc-\(name)-\(at)", ext, Array(data[..<at]), complete: complete)
            }
        }
        // Random bit flips and byte runs.
        for (name, data, ext, n) in [("a", a, "mp4", 6), ("b", b, "mp4", 6), ("c", c, "mkv", 4), ("d", dts, "ts", 4)] {
            for k in 0..<n {
                var m = data
                for _ in 0..<(1 << k) { m[rng.below(m.count)] ^= UInt8(1 << rng.below(8)) }
                try add("flip\(1 << k)-\(name)", ext, m)
            }
        }
        for (name, data, ext, n) in [("a", a, "mp4", 3), ("b", b, "mp4", 3), ("d", dts, "ts", 2)] {
            for k in 0..<n {
                var m = data
                let len = 64 + rng.below(960), at = rng.below(m.count - len)
                for i in at..<(at + len) { m[i] = k == 0 ? 0 : k == 1 ? 0xFF : UInt8(truncatingIfNeeded: rng.next()) }
                try add("run\(k)-\(name)", ext, m)
            }
        }
        // Swapped and garbled container headers.
        func patched(_ data: [UInt8], _ tag: String, _ body: (inout [UInt8], Int) -> Void) -> [UInt8]? {
            var m = data
            guard let at = find(tag, in: m) else { return nil }
            body(&m, at)
            return m
        }
        if let m = patched(a, "ftyp", { m, at in m.replaceSubrange(at..<at + 4, with: Array("xxxx".utf8)) }) { try add("hdr-ftyp", "mp4", m) }
        if let m = patched(a, "moov", { m, at in m.replaceSubrange(at..<at + 4, with: Array("moox".utf8)) }) { try add("hdr-moov", "mp4", m) }
        if let m = patched(b, "stsz", { m, at in for i in (at + 12)..<(at + 20) { m[i] = 0xFF } }) { try add("hdr-stsz", "mp4", m) }
        var zeroed = a; for i in 0..<64 { zeroed[i] = 0 }; try add("hdr-zeroed", "mp4", zeroed)
        var swapped = a; swapped.replaceSubrange(0..<4096, with: a[4096..<8192]); swapped.replaceSubrange(4096..<8192, with: a[0..<4096])
        try add("hdr-swapped", "mp4", swapped)
        var ebml = c; ebml[0] ^= 0xFF; ebml[1] ^= 0x55; try add("hdr-ebml", "mkv", ebml)
        var sync = dts; for i in stride(from: 0, to: min(sync.count, 188 * 40), by: 188) { sync[i] = 0 }; try add("hdr-tssync", "ts", sync)
        // Headers claiming 65535x65535 frames: y4m, and the MP4 sample entry and track header.
        try add("claim-y4m", "y4m", Array("YUV4MPEG2 W65535 H65535 F25:1 Ip A1:1 C420jpeg\nFRAME\n".utf8) + [UInt8](repeating: 16, count: 8192))
        try add("claim-y4m-10k", "y4m", Array("YUV4MPEG2 W10000 H10000 F25:1 Ip A1:1 C420jpeg\nFRAME\n".utf8) + [UInt8](repeating: 16, count: 8192))
        // avc1 sample entry: 4 (tag) + 6 reserved + 2 ref index + 16 predefined, then width and height.
        if let m = patched(a, "avc1", { m, at in for i in (at + 28)..<(at + 32) { m[i] = 0xFF } }) { try add("claim-avc1", "mp4", m) }
        // tkhd (version 0): width and height are the last 8 bytes of its 92-byte box, 16.16 fixed point.
        if let m = patched(a, "tkhd", { m, at in for i in (at + 80)..<(at + 88) { m[i] = i % 4 < 2 ? 0xFF : 0 } }) { try add("claim-tkhd", "mp4", m) }
        // Zero-length and huge extradata: the avcC box's size field says 8 (no payload) or ~2 GiB.
        if let m = patched(a, "avcC", { m, at in m.replaceSubrange(at - 4..<at, with: [0, 0, 0, 8]) }) { try add("extradata-zero", "mp4", m) }
        if let m = patched(a, "avcC", { m, at in m.replaceSubrange(at - 4..<at, with: [0x7F, 0xFF, 0xFF, 0xF0]) }) { try add("extradata-huge", "mp4", m) }
        // Mixed resolutions spliced mid-stream (TS: whole streams; MP4: head of one, tail of another).
        try add("splice-ts", "ts", dts + ets)
        try add("splice-mp4", "mp4", Array(a[..<(a.count / 2)]) + Array(b[(b.count / 2)...]))
        // Not video at all.
        try add("text", "mp4", Array("This is a text file, not a video.\n".utf8))
        try add("empty", "mp4", [])
        try add("zeros", "mp4", [UInt8](repeating: 0, count: 65536))
        try add("random", "mp4", (0..<65536).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        return cases
    }

    @Test func mutationCorpusNeverCrashesHangsOrLosesGoodFrames() throws {
        let dir = try TestEnv.tempDir("framepipe-hostile-corpus")
        let cases = try makeCorpus(in: dir)
        var problems: [String] = []
        var full = 0, partial = 0, rejected = 0, framesTotal = 0
        var byFamily: [String: (files: Int, full: Int, partial: Int, rejected: Int)] = [:]
        let groupSize = 12
        for start in stride(from: 0, to: cases.count, by: groupSize) {
            let group = Array(cases[start..<min(cases.count, start + groupSize)])
            let r = try framepipe(["run", "--model", Self.model, "--quiet", "--jobs", "2", "--batch", "8", "--top-k", "1",
                                   "--every", "2"] + group.map(\.path), timeout: 120)
            let (results, runProblems) = checkRun(r, inputs: group.map(\.path))
            problems += runProblems.map { "files \(start)..<\(start + group.count): \($0)" }
            for c in group {
                let res = results[c.path]!
                framesTotal += res.frames
                if res.errors.isEmpty { full += 1 } else if res.frames > 0 { partial += 1 } else { rejected += 1 }
                let family = String(c.kind.prefix { $0 != "-" }).trimmingCharacters(in: .decimalDigits)
                var f = byFamily[family] ?? (0, 0, 0, 0)
                f.files += 1
                if res.errors.isEmpty { f.full += 1 } else if res.frames > 0 { f.partial += 1 } else { f.rejected += 1 }
                byFamily[family] = f
                // Every good frame before the damage is emitted (--every 2 keeps frames 0, 2, 4...);
                // a last, partly read packet may yield one more.
                if let complete = c.completePackets, complete > 0 {
                    let low = (complete + 1) / 2, high = (complete + 2) / 2
                    if !(low...high).contains(res.frames) {
                        problems.append("\(c.kind): \(res.frames) frames emitted, expected \(low)...\(high) (\(complete) whole packets before the cut)")
                    }
                }
            }
            if runProblems.isEmpty == false { print(r.stderrText) }
        }
        print("hostile corpus: \(cases.count) files; \(full) read to the end, \(partial) stopped with an error after some frames, "
              + "\(rejected) refused with an error and no frames; \(framesTotal) frames emitted; "
              + "\(problems.count) problems (crashes, hangs, partial lines, missing or extra error records, lost frames)")
        for (family, f) in byFamily.sorted(by: { $0.key < $1.key }) {
            print("  \(family): \(f.files) files: \(f.full) to the end, \(f.partial) error after frames, \(f.rejected) refused")
        }
        for p in problems { print("  \(p)") }
        #expect(problems.isEmpty, "\(problems.count) problems, first: \(problems.first ?? "")")
        #expect(cases.count >= 60)
        if problems.isEmpty { try? FileManager.default.removeItem(at: dir) }
    }

    @Test func maxPixelsFlagRefusesLargeInputsOnly() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let big = dir.appendingPathComponent("big.mp4").path
        try sh("ffmpeg -v error -y -f lavfi -i testsrc=size=320x240:rate=25 -frames:v 10 -c:v libx264 -pix_fmt yuv420p '\(big)'")
        // carphone is 176x144 = 25344 pixels: under the limit; big is 76800: over it.
        let r = try framepipe(["run", "--model", Self.model, "--quiet", "--top-k", "1", "--every", "10",
                               "--max-pixels", "30000", Self.carphone, big])
        let (results, problems) = checkRun(r, inputs: [Self.carphone, big])
        #expect(problems.isEmpty, "\(problems)")
        #expect(results[Self.carphone]?.frames == 12)
        #expect(results[big]?.frames == 0)
        #expect((results[big]?.errors.first?["error"] as? String)?.contains("--max-pixels") == true, "\(r.stdoutText)")
        for bad in [["--max-pixels", "0"], ["--io-timeout", "-1"]] {
            let usage = try framepipe(["run", "--model", Self.model] + bad + [big])
            #expect(usage.status == 2, "\(bad): \(usage.stderrText)")
            #expect(usage.stderrText.contains(bad[0]), "\(bad): \(usage.stderrText)")
        }
        // Both limits are documented in --help of run and frames.
        for command in ["run", "frames"] {
            let help = try framepipe([command, "--help"])
            #expect(help.stdoutText.contains("--max-pixels") && help.stdoutText.contains("--io-timeout"), "\(command) --help")
        }
    }
}
