import ArgumentParser
import Foundation
import Inference
import KerasImport
import Media
import Output
import Pipeline

/// framepipe's exit statuses, the same for every command (README, "Exit status").
enum ExitStatus: Int32, CaseIterable {
    /// Everything asked for was done (also: the reader of stdout went away, `| head -1`).
    case ok = 0
    /// Some input failed (each failure reported); the other inputs were processed.
    case inputFailed = 1
    /// The command line is wrong: unknown flag or command, missing or out-of-range value.
    case usage = 2
    /// Nothing could start: the model, config or environment is unusable (unreadable or corrupt
    /// model, no default model, bf16 without CPU support, a model without the output asked for,
    /// an output folder that cannot be created). BSD's `EX_CONFIG`, as the service uses.
    case cannotStart = 78
}

/// A failure as the CLI reports it: what kind (which decides the exit status), the thing it is
/// about (an input, a model or folder path; nil when none), what was being done, and why.
///
/// Printed by `Failure.report` only, as `framepipe: SUBJECT: OPERATION: reason`, or
/// `framepipe: error: reason` when there is no subject.
struct Failure: Error, CustomStringConvertible {
    enum Kind {
        /// A bad command line: exit 2.
        case usage
        /// One input could not be processed: exit 1.
        case input
        /// The model, config or environment stops the command before any input: exit 78.
        case cannotStart
    }

    let kind: Kind
    let subject: String?
    let operation: String?
    let reason: String

    init(_ kind: Kind, subject: String? = nil, operation: String? = nil, _ reason: String) {
        self.kind = kind; self.subject = subject; self.operation = operation; self.reason = reason
    }

    var status: ExitStatus {
        switch kind {
        case .usage: return .usage
        case .input: return .inputFailed
        case .cannotStart: return .cannotStart
        }
    }

    /// The line after `framepipe: `. A reason that already starts with the subject (errors from
    /// the model loaders name their file) does not get it twice.
    var description: String {
        let body = [operation, reason].compactMap { $0 }.joined(separator: ": ")
        guard let subject, !subject.isEmpty else { return "error: " + body }
        if operation == nil && reason.hasPrefix(subject + ": ") { return reason }
        return subject + ": " + body
    }

    /// A usage error for `validate()`: ArgumentParser hands it back to `FramePipe.main`, which
    /// prints it through `report` like every other error.
    static func usage(_ message: String) -> ValidationError { ValidationError(message) }

    /// Wraps an error from loading, compiling or warming up a model (`LoadedModel.load`,
    /// `loadModelFile`, `Engine`): whatever its type, the command cannot start.
    static func model(_ error: Error, path: String?) -> Failure {
        if let failure = error as? Failure { return failure }
        return Failure(.cannotStart, subject: path, "\(error)")
    }

    /// Wraps an error about one input (decoding, reading): the input fails, the command goes on.
    static func input(_ error: Error, _ input: String) -> Failure {
        if let failure = error as? Failure { return failure }
        if let media = error as? MediaError {
            return Failure(.input, subject: media.input, operation: media.operation, media.message)
        }
        return Failure(.input, subject: input, "\(error)")
    }
}

/// The one place where errors become stderr lines and exit statuses.
enum Report {
    /// Prints `error` on stderr in framepipe's style and returns the exit status it means.
    ///
    /// - ArgumentParser's help and version requests print on stdout and return 0.
    /// - Its parse and validation errors (and `Failure.usage`) are usage errors: 2.
    /// - `ExitCode` values thrown by a command are already reported: returned as they are.
    /// - `Failure` values carry their status; any other error means an input failed (1).
    static func status(for error: Error) -> Int32 {
        if let code = error as? ExitCode { return code.rawValue }
        if let failure = error as? Failure {
            line(failure.description)
            return failure.status.rawValue
        }
        if let media = error as? MediaError {
            return status(for: Failure.input(media, media.input))
        }
        if error is LineWriter.Closed { return ExitStatus.ok.rawValue }
        // A model error that reached here unwrapped: still nothing ran. Its text names the file.
        if let e = error as? InferenceError { return status(for: Failure(.cannotStart, subject: e.source, "\(e)")) }
        if let e = error as? KerasImportError { return status(for: Failure(.cannotStart, subject: e.path, "\(e)")) }
        if let e = error as? SetupError {
            line("\(e)")
            return ExitStatus.cannotStart.rawValue
        }
        let code = FramePipe.exitCode(for: error)
        if code == .success {  // --help, --version, `help CMD`
            let text = FramePipe.fullMessage(for: error)
            if !text.isEmpty { try? StdoutText.write(text + "\n") }
            return ExitStatus.ok.rawValue
        }
        if code == .validationFailure {  // ArgumentParser's 64 (EX_USAGE): parse errors and validate()
            var message = FramePipe.message(for: error)
            if message.hasPrefix("Error: ") { message.removeFirst("Error: ".count) }
            line("error: " + message)
            let args = CommandLine.arguments.dropFirst()
            let sub = args.first.flatMap { a in FramePipe.configuration.subcommands.first { $0._commandName == a } }
            line("See '\(sub.map { "framepipe \($0._commandName) --help" } ?? "framepipe --help")'.")
            return ExitStatus.usage.rawValue
        }
        line("error: \(FramePipe.message(for: error))")
        return ExitStatus.inputFailed.rawValue
    }

    /// One stderr line, `framepipe: TEXT`.
    static func line(_ text: String) {
        FileHandle.standardError.write(Data("framepipe: \(text)\n".utf8))
    }
}

/// Text on stdout through one `write(2)` per call: a closed reader (`| head -1`) throws
/// `LineWriter.Closed`, which every command turns into a quiet exit 0.
enum StdoutText {
    private static let writer = LineWriter()

    static func write(_ text: String) throws { try writer.write(Array(text.utf8)) }

    /// `text` plus a newline, like `print`.
    static func line(_ text: String) throws { try write(text + "\n") }
}

/// `framepipe: MESSAGE` on stderr, for notes and summaries (errors go through `Report`).
func printError(_ message: String) {
    Report.line(message)
}
