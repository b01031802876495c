import ArgumentParser

/// `framepipe frames` (being built).
struct FramesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "frames", abstract: "(not built yet)")
    func run() async throws { throw ValidationError("`framepipe frames` is not built yet") }
}
