import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Publishes several `AtomicFile`s as one set: all of them appear under their final names, or none
/// does (an earlier set under those names is then left as it was).
///
/// 1. every file is flushed, fsynced and closed (a full disk or an I/O error shows here, before any
///    final name is touched);
/// 2. each is renamed into place, in the order given (the caller puts its "set is complete" marker,
///    `.jsonl`, last); an existing final file is kept under a hard-linked backup name first;
/// 3. each folder is fsynced, so the renames survive a crash.
///
/// A failure at any step before the last rename's folder sync takes back the renames already done
/// (restoring the backups, or removing the new names) and removes every temporary: no partial set
/// stays under final names. Runs on the caller's thread; `FileSetSink` calls it on its own queue.
public enum FileSetCommit {
    /// Commits `files` as one set; throws the first failure after rolling back.
    public static func commit(_ files: [AtomicFile]) throws {
        do {
            for f in files { try f.prepare() }
        } catch {
            files.forEach { $0.abandon() }
            throw error
        }
        var published: [AtomicFile] = []
        do {
            for f in files {
                try f.publish()
                published.append(f)
            }
            for dir in Set(files.map(\.directory)).sorted() {
                if let code = files[0].io.syncDirectory(dir) {
                    throw OutputError(path: dir, operation: "fsync folder", code: code)
                }
            }
        } catch {
            for f in published.reversed() { f.unpublish() }
            files.forEach { $0.abandon() }
            for dir in Set(files.map(\.directory)) { _ = FileIO.system.syncDirectory(dir) }
            throw error
        }
        files.forEach { $0.dropBackup() }
    }
}
