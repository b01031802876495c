import ArgumentParser

/// `framepipe probe` (being built).
struct ProbeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "probe", abstract: "(not built yet)")
    func run() async throws { throw ValidationError("`framepipe probe` is not built yet") }
}
