import ArgumentParser

/// `framepipe inspect` (being built).
struct InspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "(not built yet)")
    func run() async throws { throw ValidationError("`framepipe inspect` is not built yet") }
}
