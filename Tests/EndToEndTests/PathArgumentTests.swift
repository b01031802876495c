import Foundation
import Testing
import TestSupport

/// Every subcommand against hostile path arguments and a closed stdout, and a fuzz pass over
/// argument lists: whatever the command line, framepipe ends with a status of the table
/// (0, 1, 2, 78), one-style messages, never a signal and never a hang.
@Suite(.enabled(if: TestEnv.hasAssets))
struct PathArgumentTests {
    static let model = TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx")
    static let carphone = TestEnv.asset("videos/carphone_pristine.mp4")
    static let bunny = TestEnv.asset("videos/bigbuckbunny.mp4")
    static let cat = TestEnv.asset("images/cat.bmp")
    static let bird = TestEnv.asset("images/bird.bmp")
    static let table: Set<Int32> = [0, 1, 2, 78]

    /// A folder holding a folder, an empty file and a FIFO that no one ever opens for writing.
    struct Hostile {
        let root: URL
        var paths: [(String, String)] {
            [("a folder", root.appendingPathComponent("folder").path), ("/dev/null", "/dev/null"),
             ("an empty file", root.appendingPathComponent("empty.mp4").path),
             ("a FIFO without writer", root.appendingPathComponent("fifo").path)]
        }

        init() throws {
            root = try TestEnv.tempDir("framepipe-paths")
            try FileManager.default.createDirectory(at: root.appendingPathComponent("folder"), withIntermediateDirectories: true)
            try Data().write(to: root.appendingPathComponent("empty.mp4"))
            guard mkfifo(root.appendingPathComponent("fifo").path, 0o644) == 0 else {
                throw TestSupportError("mkfifo: \(String(cString: strerror(errno)))")
            }
        }
    }

    static func expectClean(_ r: ProcessResult, _ what: String, allowed: Set<Int32> = table,
                            sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!r.timedOut, "\(what): hung", sourceLocation: sourceLocation)
        #expect(!r.signaled, "\(what): killed by signal \(r.status)", sourceLocation: sourceLocation)
        #expect(allowed.contains(r.status), "\(what): exit status \(r.status): \(r.stderrText)", sourceLocation: sourceLocation)
        for line in r.stderrText.split(separator: "\n") where !line.hasPrefix("framepipe: ") {
            Issue.record("\(what): stray stderr line '\(line)'", sourceLocation: sourceLocation)
        }
    }

    @Test func everyPathArgumentSurvivesFolderNullEmptyAndFIFO() throws {
        let hostile = try Hostile()
        defer { try? FileManager.default.removeItem(at: hostile.root) }
        // (command with P for the path, the status expected: an input fails with 1, a model or
        // folder that cannot be used stops the command with 78.)
        let templates: [([String], Int32?)] = [
            (["run", "--model", Self.model, "--io-timeout", "2", "--quiet", "P"], 1),
            (["run", "--model", "P", Self.carphone], 78),
            (["run", "--model", Self.model, "--labels", "P", Self.carphone], 78),
            (["run", "--model", Self.model, "--quiet", "--end", "0.1", "--output-dir", "P", Self.carphone], nil),
            (["frames", "--io-timeout", "2", "P"], 1),
            (["probe", "--io-timeout", "2", "P"], 1),
            (["check", "--model", Self.model, "--io-timeout", "2", "P"], 1),
            (["check", "--model", "P", Self.cat], 78),
            (["inspect", "P"], 78),
            (["bench", "--model", "P", "--iterations", "1"], 78),
            (["bench", "--model", Self.model, "--io-timeout", "2", "--decode", "P"], 1),
        ]
        var cases: [(String, [String], Int32?)] = []
        for (template, want) in templates {
            for (kind, path) in hostile.paths {
                // The output folder: an existing folder is fine (0); anything else cannot be one.
                let expected = want ?? (kind == "a folder" ? 0 : 78)
                cases.append((kind, template.map { $0 == "P" ? path : $0 }, expected))
            }
        }
        // Side by side: most of the time is the model loading or a FIFO waiting for its 2 s.
        let results = UnsafeMutableBufferPointer<ProcessResult?>.allocate(capacity: cases.count)
        results.initialize(repeating: nil)
        defer { results.deallocate() }
        nonisolated(unsafe) let slots = results
        let next = NSLock()
        nonisolated(unsafe) var cursor = 0
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            while true {
                next.lock(); let i = cursor; cursor += 1; next.unlock()
                guard i < cases.count else { return }
                slots[i] = try? framepipe(cases[i].1, timeout: 60)
            }
        }
        for (i, (kind, args, want)) in cases.enumerated() {
            guard let r = results[i] else { Issue.record("\(args): could not run"); continue }
            let what = "\(args.joined(separator: " ")) [\(kind)]"
            Self.expectClean(r, what)
            if let want { #expect(r.status == want, "\(what): status \(r.status), expected \(want): \(r.stderrText)") }
            if r.status != 0 { #expect(!r.stderrText.isEmpty, "\(what): failed without a message") }
        }
    }

    @Test func everyCommandEndsQuietlyWhenStdoutCloses() throws {
        let fp = "'\(TestEnv.framepipe)'"
        let commands = [
            "run --model '\(Self.model)' '\(Self.bunny)'",
            "frames '\(Self.bunny)'",
            "probe '\(Self.bunny)'",
            "check --model '\(Self.model)' '\(Self.cat)' '\(Self.bird)' '\(Self.cat)'",
            "inspect '\(Self.model)'",
            "bench --model '\(Self.model)' --batch 1 --iterations 2 --warmup 0",
            "bench --model '\(Self.model)' --decode '\(Self.carphone)'",
            "help run",
        ]
        for command in commands {
            // `head -1` reads a line and leaves; `true` leaves before the first write.
            for reader in ["head -1", "true"] {
                let r = try shell("set -o pipefail; \(fp) \(command) 2>/tmp/fp-stderr-$$ | \(reader) >/dev/null; s=$?; "
                                  + "cat /tmp/fp-stderr-$$ | grep -v '^framepipe: \\(model\\|input\\|classes\\|  \\)' >&2; "
                                  + "rm -f /tmp/fp-stderr-$$; exit $s", timeout: 120)
                #expect(!r.timedOut, "\(command) | \(reader): hung")
                #expect(r.status == 0, "\(command) | \(reader): status \(r.status) (141 = SIGPIPE): \(r.stderrText)")
                #expect(r.stderrText.isEmpty, "\(command) | \(reader): \(r.stderrText)")
            }
        }
    }

    /// Random argument lists from a table of flags and values (valid, out of range, malformed),
    /// seeded, bounded: every run must end with a status of the table, no signal, no hang.
    @Test func argumentFuzz() throws {
        let hostile = try Hostile()
        defer { try? FileManager.default.removeItem(at: hostile.root) }
        let numbers = ["-1", "0", "1", "2", "3", "-0", "1e309", "nan", "-inf", "0.5", "1e9", "99999999999999999999", "x", ""]
        let flags: [String: [String]] = [
            "--batch": ["1", "4", "1024", "1025", "-3", "0", "abc"],
            "--top-k": ["1", "3", "0", "-2", "1001", "100001"],
            "--min-score": ["0", "0.5", "1", "1.5", "-0.1", "nan"],
            "--every": ["1", "7", "0", "-1", "1000000001"],
            "--fps": ["1", "0.5", "0", "-2", "inf", "1e-300", "1000000"],
            "--start": ["0", "1.5", "-1", "1e300", "nan"],
            "--end": ["0.2", "3", "0", "-5", "1e10"],
            "--stream": ["0", "1", "7", "-1"],
            "--decoder-threads": ["0", "1", "64", "65", "-1"],
            "--max-pixels": ["1", "100", "30000", "0", "-5"],
            "--io-timeout": ["0", "1", "-1", "1e7", "nan"],
            "--max-latency": ["1", "50", "0", "-1"],
            "--jobs": ["1", "2", "0", "257"],
            "--frame-queue": ["1", "0", "8"],
            "--batches-in-flight": ["1", "2", "3"],
            "--threads": ["1", "2", "0", "-1"],
            "--size": ["224", "7", "4097", "-224"],
            "--mean": ["127.5", "1,2,3", "1,2", "a,b,c", ",,", "nan"],
            "--std": ["127.5", "0", "-1", "1,2,3", "1,,3"],
            "--resize": ["stretch", "center-crop", "letterbox", "squash"],
            "--precision": ["fp32", "bf16", "fp8"],
            "--emit": ["labels", "embedding", "both", "none"],
            "--embedding-encoding": ["json", "base64", "hex"],
            "--iterations": ["1", "2", "0", "-1"],
            "--warmup": ["0", "1", "-1"],
            "--model": [Self.model, Self.model, hostile.paths[0].1, "/dev/null", hostile.paths[2].1, "/nonexistent.onnx"],
            "--labels": [TestEnv.asset("models/imagenet_labels.txt"), "/dev/null", hostile.paths[0].1],
            "--output-dir": [hostile.root.appendingPathComponent("out").path, "/dev/null"],
            "--keyframes": [], "--quiet": [], "--json": [], "--compact": [], "--bogus": [],
        ]
        let commands: [String: [String]] = [
            "run": ["--batch", "--top-k", "--min-score", "--every", "--fps", "--start", "--end", "--stream", "--decoder-threads",
                    "--max-pixels", "--io-timeout", "--max-latency", "--jobs", "--frame-queue", "--batches-in-flight",
                    "--threads", "--size", "--mean", "--std", "--resize", "--precision", "--emit", "--embedding-encoding",
                    "--model", "--labels", "--output-dir", "--keyframes", "--quiet", "--bogus"],
            "frames": ["--every", "--fps", "--start", "--end", "--stream", "--decoder-threads", "--max-pixels", "--io-timeout",
                       "--keyframes", "--bogus"],
            "probe": ["--compact", "--io-timeout", "--bogus"],
            "check": ["--top-k", "--model", "--threads", "--size", "--mean", "--std", "--resize", "--labels", "--precision",
                      "--io-timeout"],
            "inspect": ["--json", "--bogus"],
            "bench": ["--batch", "--iterations", "--warmup", "--threads", "--precision", "--model", "--json"],
            "help": [],
        ]
        let inputs = [Self.carphone, Self.cat, "/nonexistent.mp4", hostile.paths[0].1, hostile.paths[2].1, "-", ""]
        var rng = SplitMix(seed: 13)
        func pick<T>(_ a: [T]) -> T { a[Int(rng.next() % UInt64(a.count))] }
        let names = commands.keys.sorted()
        var runs: [[String]] = []
        for _ in 0..<150 {
            let command = pick(names)
            var args = [command]
            if command == "help" {
                args.append(pick(names + ["foo", "--bogus"]))
            } else {
                let chosen = commands[command]!
                // The real model most of the time, so that runs get past loading it.
                if ["run", "check", "bench"].contains(command) && rng.next() % 3 == 0 { args += ["--model", Self.model] }
                // Keep the work small: a short window of a small clip, few timed runs.
                if command == "run" || command == "frames" { args += ["--end", "0.3", "--io-timeout", "2"] }
                if command == "bench" { args += ["--iterations", "1", "--warmup", "0", "--batch", "2"] }
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    let flag = pick(chosen)
                    // bench at the largest batch is real work (over a minute in bf16 on a CPU that has it, on
                    // a loaded machine), not an argument question: benchBatchIsCappedLikeRun covers that size.
                    let values = command == "bench" && flag == "--batch" ? flags[flag]!.filter { $0 != "1024" } : flags[flag]!
                    if values.isEmpty { args.append(flag); continue }
                    let value = rng.next() % 5 == 0 ? pick(numbers) : pick(values)
                    args += rng.next() % 2 == 0 ? [flag, value] : ["\(flag)=\(value)"]
                }
                if command == "inspect" { args.append(rng.next() % 3 == 0 ? pick(inputs) : Self.model) }
                if ["run", "frames", "probe", "check"].contains(command) {
                    args.append(command == "check" ? pick([Self.cat, Self.cat] + inputs) : pick(inputs))
                }
            }
            runs.append(args)
        }
        // Generated first (the seed fixes the list), then run two at a time.
        let results = UnsafeMutableBufferPointer<ProcessResult?>.allocate(capacity: runs.count)
        results.initialize(repeating: nil)
        defer { results.deallocate() }
        nonisolated(unsafe) let slots = results
        DispatchQueue.concurrentPerform(iterations: 2) { worker in
            for i in stride(from: worker, to: runs.count, by: 2) { slots[i] = try? framepipe(runs[i], timeout: 60) }
        }
        var counts: [Int32: Int] = [:]
        for (i, args) in runs.enumerated() {
            guard let r = results[i] else { Issue.record("\(args): could not run"); continue }
            Self.expectClean(r, args.joined(separator: " "))
            counts[r.status, default: 0] += 1
        }
        print("argument fuzz: 150 runs, exit statuses \(counts.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))")
        #expect(counts[0, default: 0] > 0 && counts[2, default: 0] > 0, "the table should reach both success and usage errors")
    }
}
