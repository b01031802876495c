import ArgumentParser

/// `framepipe bench` (being built).
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "(not built yet)")
    func run() async throws { throw ValidationError("`framepipe bench` is not built yet") }
}
