import ArgumentParser

/// `framepipe serve` (being built).
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "(not built yet)")
    func run() async throws { throw ValidationError("`framepipe serve` is not built yet") }
}
