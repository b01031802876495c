import ArgumentParser

/// `framepipe run` (being built).
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "(not built yet)")
    func run() async throws { throw ValidationError("`framepipe run` is not built yet") }
}
