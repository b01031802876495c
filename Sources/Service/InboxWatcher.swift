import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Watches one folder with inotify(7) for files that are complete: written and closed
/// (`IN_CLOSE_WRITE`) or moved in (`IN_MOVED_TO`). A file still being written raises neither, so it
/// is never reported half-written. Hidden names (`.x`, including our own temporary files) are ignored.
///
/// `start()` reads events on its own thread (polling every 250 ms so `stop()` is prompt) and hands
/// each name to `onFile`.
public final class InboxWatcher: @unchecked Sendable {
    public let directory: String
    private let onFile: (String, Bool) -> Void
    private var fd: Int32 = -1
    private let lock = NSLock()
    private var stopped = false
    private let finished = DispatchSemaphore(value: 0)

    /// - Parameter onFile: receives the file name (not the path) and whether it was moved in
    ///   (`IN_MOVED_TO`: complete at once) rather than closed after writing, on the watcher's thread.
    public init(directory: String, onFile: @escaping (String, Bool) -> Void) {
        self.directory = directory; self.onFile = onFile
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Arms the watch (calls `inotify_init1` and `inotify_add_watch`); after it returns, every
    /// completed file is reported. Throws naming the folder when it cannot be watched.
    public func start() throws {
        fd = inotify_init1(Int32(IN_CLOEXEC) | Int32(IN_NONBLOCK))
        guard fd >= 0 else { throw ServiceError("\(directory): inotify_init1 failed: \(String(cString: strerror(errno)))") }
        let mask = UInt32(IN_CLOSE_WRITE) | UInt32(IN_MOVED_TO) | UInt32(IN_ONLYDIR)
        if inotify_add_watch(fd, directory, mask) < 0 {
            throw ServiceError("\(directory): cannot watch folder: \(String(cString: strerror(errno)))")
        }
        Thread.detachNewThread { [self] in
            self.loop()
            self.finished.signal()
        }
    }

    /// Stops the thread and waits for it.
    public func stop() {
        lock.lock(); let was = stopped; stopped = true; lock.unlock()
        if !was && fd >= 0 { finished.wait() }
    }

    private var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    private func loop() {
        let size = 64 * 1024
        let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        defer { buf.deallocate() }
        while !isStopped {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 250) <= 0 { continue }
            let n = read(fd, buf, size)
            if n <= 0 { continue }
            for (name, moved) in Self.parse(UnsafeRawBufferPointer(start: buf, count: n)) { onFile(name, moved) }
        }
    }

    /// The names of completed regular entries in a buffer of `struct inotify_event`s
    /// (wd i32, mask u32, cookie u32, len u32, name[len], NUL-padded), each with whether it was
    /// moved in.
    static func parse(_ raw: UnsafeRawBufferPointer) -> [(name: String, moved: Bool)] {
        var names: [(name: String, moved: Bool)] = []
        var off = 0
        let header = 16
        while off + header <= raw.count {
            let mask = raw.loadUnaligned(fromByteOffset: off + 4, as: UInt32.self)
            let len = Int(raw.loadUnaligned(fromByteOffset: off + 12, as: UInt32.self))
            let nameBytes = UnsafeRawBufferPointer(rebasing: raw[(off + header)..<min(raw.count, off + header + len)])
            let name = String(decoding: nameBytes.prefix { $0 != 0 }, as: UTF8.self)
            off += header + len
            if mask & UInt32(IN_ISDIR) != 0 || mask & UInt32(IN_Q_OVERFLOW) != 0 { continue }
            if mask & (UInt32(IN_CLOSE_WRITE) | UInt32(IN_MOVED_TO)) != 0, Inbox.isCandidate(name) {
                names.append((name, mask & UInt32(IN_MOVED_TO) != 0))
            }
        }
        return names
    }
}
