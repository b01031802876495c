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

/// Turns SIGTERM/SIGINT/SIGHUP into calls on a thread of our own, through a real signal handler
/// writing to a self-pipe.
///
/// Why not `DispatchSource.makeSignalSource` (which swift-service-lifecycle's signal handling
/// uses)? On Linux libdispatch reads signals with `signalfd`, which only sees a signal while it is
/// blocked in the receiving thread; the daemon's FFmpeg, OpenMP and worker threads do not block
/// it, and with the disposition set to SIG_IGN a SIGTERM delivered to one of them is simply lost
/// (seen with a UDP stream running: `systemctl stop` would then wait for TimeoutStopSec and
/// SIGKILL). A handler runs in whichever thread gets the signal, so nothing is lost.
/// The signals are also unblocked in the calling thread, as a parent may have started us with
/// them blocked.
public final class SignalRelay: @unchecked Sendable {
    private let handler: (Int32) -> Void
    private var fds: [Int32] = [-1, -1]

    /// Installs the handler for `signals`; `handler` is called on the relay's thread, once per signal.
    /// One relay per process.
    public init(signals: [Int32], handler: @escaping (Int32) -> Void) {
        self.handler = handler
        precondition(relayWriteFD < 0, "one SignalRelay per process")
        _ = pipe(&fds)
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        relayWriteFD = fds[1]
        _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)  // a flood of signals never blocks the handler
        let readFD = fds[0]
        // A parent may start us with these signals blocked (a blocked mask is inherited across
        // fork/exec): unblock them here and in the relay thread created below, so they are delivered.
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        Thread.detachNewThread { [handler] in
            var b: UInt8 = 0
            while true {
                let n = read(readFD, &b, 1)
                if n == 1 { handler(Int32(b)) } else if n < 0 && errno == EINTR { continue } else { return }
            }
        }
        for s in signals { signal(s, relayHandler) }
    }
}
