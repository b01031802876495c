import ArgumentParser

/// `framepipe check` (being built).
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check", abstract: "(not built yet)")
    func run() async throws { throw ValidationError("`framepipe check` is not built yet") }
}
