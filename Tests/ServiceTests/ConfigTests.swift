import Foundation
import Pipeline
import Testing
import TestSupport
@testable import Service

@Suite struct ConfigTests {
    @Test func exampleFileParsesWithEveryKey() throws {
        let path = TestEnv.packageRoot.appendingPathComponent("systemd/framepipe.toml.example").path
        // As under framepipe.service and framepipe@cam: folders follow $STATE_DIRECTORY.
        let c = try ServeConfig.load(path: path, environment: ["STATE_DIRECTORY": "/var/lib/framepipe"])
        #expect(c.inbox == "/var/lib/framepipe/inbox")
        #expect(c.outbox == "/var/lib/framepipe/outbox")
        #expect(c.resolvedDoneDir == "/var/lib/framepipe/inbox/done")
        #expect(c.resolvedStreamDir == "/var/lib/framepipe/streams")
        #expect(c.metricsListen == nil)  // no fixed port to clash between instances
        #expect(c.drainTimeout == 20)  // an integer where a float is expected is accepted
        #expect(c.settleTime == 2 && c.retries == 1 && c.retryDelay == 10)
        #expect(c.model.path == nil)  // the default model
        #expect(c.model.batch == 16)
        #expect(c.sampling == SamplingSettings())  // the example spells out the defaults
        #expect(c.output.topK == 5)
        #expect(c.output.emitOptions.labels && !c.output.emitOptions.embedding)  // lines: labels only
        #expect(c.output.files == ["npy", "csv"] && c.output.setComputeOptions.embedding)  // ... the .npy has the embeddings
        #expect(c.streams.isEmpty)
        let cam = try ServeConfig.load(path: path, environment: ["STATE_DIRECTORY": "/var/lib/framepipe/cam"])
        #expect(cam.inbox == "/var/lib/framepipe/cam/inbox" && cam.outbox == "/var/lib/framepipe/cam/outbox")

        let instance = try ServeConfig.load(
            path: TestEnv.packageRoot.appendingPathComponent("systemd/framepipe-instance.toml.example").path,
            environment: ["STATE_DIRECTORY": "/var/lib/framepipe/door"])
        #expect(instance.inbox == nil && instance.resolvedStreamDir == "/var/lib/framepipe/door/streams")
        #expect(instance.streams.map(\.name) == ["door-camera"] && instance.streams[0].connectTimeout == 5)
    }

    @Test func unitSettingsAndTimeSpans() throws {
        #expect(ConfigCheck.timespan("30s") == 30)
        #expect(ConfigCheck.timespan("30") == 30)
        #expect(ConfigCheck.timespan("1min 30s") == 90)
        #expect(ConfigCheck.timespan("2m") == 120)
        #expect(ConfigCheck.timespan("500ms") == 0.5)
        #expect(ConfigCheck.timespan("1h") == 3600)
        #expect(ConfigCheck.timespan("infinity") == .infinity)
        #expect(ConfigCheck.timespan("soon") == nil && ConfigCheck.timespan("") == nil)
        let unit = try ConfigCheck.parseUnit(TestEnv.packageRoot.appendingPathComponent("systemd/framepipe.service").path,
                                             origin: "shipped", name: nil)
        #expect(unit.timeoutStopSec == 30 && unit.dynamicUser && unit.protectHome && unit.privateTmp)
        #expect(unit.stateDirectories == ["/var/lib/framepipe"] && unit.runsUnprivileged)
        #expect(ConfigCheck.assignments(#"A=1 "B=two words" C="#) == ["A=1", "B=two words", "C="])
        #expect(ConfigCheck.unitNames(forConfig: "/etc/framepipe/framepipe.toml") == ["framepipe.service"])
        #expect(ConfigCheck.unitNames(forConfig: "/etc/framepipe/cam.toml") == ["framepipe@cam.service", "framepipe@.service"])
    }

    @Test func defaultsForAMinimalInbox() throws {
        let c = try ServeConfig.parse("inbox = \"/in\"\noutbox = \"/out\"\n")
        #expect(c.stateDir == "/var/lib/framepipe")
        #expect(c.resolvedFailedDir == "/in/failed")
        #expect(c.resolvedStreamDir == "/var/lib/framepipe/streams")
        #expect(c.metricsListen == nil)
        #expect(c.maxAttempts == 3)
        #expect(c.model == ModelConfig())
        #expect(c.output.files == ["npy", "csv"] && c.settleTime == 2)
        let rel = try ServeConfig.parse("inbox = \"in\"\noutbox = \"/abs/out\"\n", environment: ["STATE_DIRECTORY": "/var/lib/x"])
        #expect(rel.inbox == "/var/lib/x/in" && rel.outbox == "/abs/out")
        #expect(c.streams.isEmpty)
    }

    @Test(arguments: [
        ("inbox = \"/in\"\noutbox = \"/out\"\ntop_k = 3\n", "unknown key(s): top_k"),
        ("inbox = \"/in\"\noutbox = \"/out\"\n[model]\nbatch = \"big\"\n", "`model.batch` is missing or has the wrong type"),
        ("inbox = \"/in\"\n", "`inbox` is set but `outbox` is not"),
        ("outbox = \"/out\"\n", "nothing to do"),
        ("inbox = \"/in\"\noutbox = \"/in\"\n", "must be different folders"),
        ("inbox = \"/in\"\noutbox = \"/out\"\nmetrics_listen = \"localhost\"\n", "`metrics_listen` must be IPv4:port"),
        ("inbox = \"/in\"\noutbox = \"/out\"\n[model]\nprecision = \"int8\"\n", "`model.precision`"),
        ("inbox = \"/in\"\noutbox = \"/out\"\n[model]\nmean = [1.0, 2.0]\n", "`model.mean` takes one number or three numbers, R,G,B (got 1,2)"),
        ("inbox = \"/in\"\noutbox = \"/out\"\n[output]\nemit = [\"pixels\"]\n", "`output.emit` entries"),
        ("[[streams]]\nname = \"../x\"\nurl = \"udp://127.0.0.1:1\"\n", "stream name \"../x\""),
        ("[[streams]]\nname = \"a\"\nurl = \"u\"\n[[streams]]\nname = \"a\"\nurl = \"v\"\n", "used twice"),
        ("[[streams]]\nname = \"a\"\n", "`streams.[0].url` is missing"),
        ("inbox = [\n", "TOML syntax error at line"),
        ("inbox = \"/in\"\noutbox = \"/out\"\n[output]\nfiles = [\"jsonl\"]\n", "`output.files` entries must be \"npy\" or \"csv\""),
        ("inbox = \"/in\"\noutbox = \"/out\"\nsettle_time = -1\n", "`settle_time` must not be negative"),
        ("[[streams]]\nname = \"a\"\nurl = \"udp://x\"\nconnect_timeout = 0\n", "`connect_timeout` must be positive"),
    ])
    func badConfigsSayWhatIsWrong(text: String, expected: String) {
        do {
            _ = try ServeConfig.parse(text, path: "/etc/framepipe/test.toml")
            Issue.record("accepted: \(text)")
        } catch {
            let message = "\(error)"
            #expect(message.hasPrefix("/etc/framepipe/test.toml: "), "\(message)")
            #expect(message.contains(expected), "\(message)")
        }
    }

    @Test func missingFileIsAClearError() {
        #expect(throws: ConfigError.self) { try ServeConfig.load(path: "/nonexistent/framepipe.toml") }
        let message = (try? ServeConfig.load(path: "/nonexistent/framepipe.toml")).map { "\($0)" }
            ?? { do { _ = try ServeConfig.load(path: "/nonexistent/framepipe.toml"); return "" } catch { return "\(error)" } }()
        #expect(message.contains("/nonexistent/framepipe.toml: cannot read the configuration file"))
    }

    @Test func stateDirDefaultsToSystemdsStateDirectory() throws {
        let text = "[[streams]]\nname = \"cam\"\nurl = \"udp://127.0.0.1:5000\"\n"
        let c = try ServeConfig.parse(text, environment: ["STATE_DIRECTORY": "/var/lib/framepipe/cam"])
        #expect(c.stateDir == "/var/lib/framepipe/cam")
        #expect(c.resolvedStreamDir == "/var/lib/framepipe/cam/streams")
        let explicit = try ServeConfig.parse("state_dir = \"/srv/fp\"\n" + text, environment: ["STATE_DIRECTORY": "/x"])
        #expect(explicit.stateDir == "/srv/fp")
    }

    @Test func listenAddressParsing() throws {
        let (host, port) = try ServeConfig.parseListen("127.0.0.1:9464")
        #expect(host == "127.0.0.1" && port == 9464)
        #expect(throws: (any Error).self) { try ServeConfig.parseListen("127.0.0.1:0") }
        #expect(throws: (any Error).self) { try ServeConfig.parseListen("::1:80") }
    }
}
