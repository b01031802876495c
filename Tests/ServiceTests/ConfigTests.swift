import Foundation
import Testing
import TestSupport
@testable import Service

@Suite struct ConfigTests {
    @Test func exampleFileParsesWithEveryKey() throws {
        let path = TestEnv.packageRoot.appendingPathComponent("systemd/framepipe.toml.example").path
        let c = try ServeConfig.load(path: path)
        #expect(c.inbox == "/var/lib/framepipe/inbox")
        #expect(c.resolvedDoneDir == "/var/lib/framepipe/inbox/done")
        #expect(c.metricsListen == "127.0.0.1:9464")
        #expect(c.drainTimeout == 20)  // an integer where a float is expected is accepted
        #expect(c.model.mean == [127.5, 127.5, 127.5])
        #expect(c.model.batch == 16)
        #expect(c.output.topK == 5)
        #expect(c.output.emitOptions.labels && !c.output.emitOptions.embedding)
        #expect(c.streams.map(\.name) == ["door-camera"])
        #expect(c.streams[0].reconnectMax == 30)
    }

    @Test func defaultsForAMinimalInbox() throws {
        let c = try ServeConfig.parse("inbox = \"/in\"\noutbox = \"/out\"\n")
        #expect(c.stateDir == "/var/lib/framepipe")
        #expect(c.resolvedFailedDir == "/in/failed")
        #expect(c.resolvedStreamDir == "/var/lib/framepipe/streams")
        #expect(c.metricsListen == nil)
        #expect(c.maxAttempts == 3)
        #expect(c.model == ModelConfig())
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
        ("inbox = \"/in\"\noutbox = \"/out\"\n[model]\nmean = [1.0, 2.0]\n", "`model.mean` must have 1 or 3 values"),
        ("inbox = \"/in\"\noutbox = \"/out\"\n[output]\nemit = [\"pixels\"]\n", "`output.emit` entries"),
        ("[[streams]]\nname = \"../x\"\nurl = \"udp://127.0.0.1:1\"\n", "stream name \"../x\""),
        ("[[streams]]\nname = \"a\"\nurl = \"u\"\n[[streams]]\nname = \"a\"\nurl = \"v\"\n", "used twice"),
        ("[[streams]]\nname = \"a\"\n", "`streams.[0].url` is missing"),
        ("inbox = [\n", "TOML syntax error at line"),
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
