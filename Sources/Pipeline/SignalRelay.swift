import Foundation
#if canImport(Glibc)
import Glibc
#endif

nonisolated(unsafe) private var relayWriteFD: Int32 = -1

private func relayHandler(_ sig: Int32) {
    // Async-signal-safe: one byte into a pipe, errno preserved.
    let saved = errno
    var b = UInt8(truncatingIfNeeded: sig)
    _ = write(relayWriteFD, &b, 1)
    errno = saved
}

/// The one signal path of `run` and `serve`: SIGTERM/SIGINT (and SIGHUP for `serve`) become calls
/// on a thread of the relay's own, through a real signal handler writing to a self-pipe. A signal
/// that arrives before the command has set its handler (while it parses flags, loads and compiles
/// the model) is kept and handed to the handler as soon as it is set: none is lost, and none kills
/// the process with its default action.
///
/// Why not `DispatchSource.makeSignalSource` (which swift-service-lifecycle's signal handling
/// uses)? On Linux libdispatch reads signals with `signalfd`, which only sees a signal while it is
/// blocked in the receiving thread; FFmpeg, OpenMP and worker threads do not block it, and with the
/// disposition set to SIG_IGN a SIGTERM delivered to one of them is simply lost (seen with a UDP
/// stream running: `systemctl stop` would then wait for TimeoutStopSec and SIGKILL). A handler runs
/// in whichever thread gets the signal, so nothing is lost. The signals are also unblocked in the
/// calling thread, as a parent may have started us with them blocked.
public final class SignalRelay: @unchecked Sendable {
    /// The process's relay.
    public static let shared = SignalRelay()

    private let lock = NSLock()
    private var handler: (@Sendable (Int32) -> Void)?
    private var pending: [Int32] = []
    private var caught = Set<Int32>()
    private var _first: Int32?
    private var started = false

    private init() {}

    /// The first signal received (nil: none yet).
    public var received: Int32? { lock.lock(); defer { lock.unlock() }; return _first }

    /// Catches `signals` from now on (idempotent; more signals can be added later). Until a
    /// handler is set, they are kept.
    public func catchSignals(_ signals: [Int32]) {
        lock.lock()
        if !started {
            started = true
            var fds: [Int32] = [-1, -1]
            _ = pipe(&fds)
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)  // a flood of signals never blocks the handler
            relayWriteFD = fds[1]
            let readFD = fds[0]
            Thread.detachNewThread { [self] in
                var b: UInt8 = 0
                while true {
                    let n = read(readFD, &b, 1)
                    if n == 1 { deliver(Int32(b)) } else if n < 0 && errno == EINTR { continue } else { return }
                }
            }
        }
        let new = signals.filter { caught.insert($0).inserted }
        lock.unlock()
        // The handler first, then unblock: a parent (or our own re-exec) may start us with these
        // signals blocked (the mask is inherited across fork/exec); one pending since then is
        // delivered to the handler now. The relay thread reads a pipe, it needs no signal.
        for s in new { signal(s, relayHandler) }
        var set = sigset_t()
        sigemptyset(&set)
        for s in new { sigaddset(&set, s) }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// Sets the handler, called on the relay's thread once per signal; signals kept so far are
    /// handed to it at once (on the relay's thread too).
    public func setHandler(_ handler: @escaping @Sendable (Int32) -> Void) {
        lock.lock()
        self.handler = handler
        let kept = pending
        pending = []
        lock.unlock()
        if !kept.isEmpty {
            Thread.detachNewThread { for s in kept { handler(s) } }
        }
    }

    private func deliver(_ sig: Int32) {
        lock.lock()
        if _first == nil && sig != SIGHUP { _first = sig }
        guard let h = handler else { pending.append(sig); lock.unlock(); return }
        lock.unlock()
        h(sig)
    }
}
