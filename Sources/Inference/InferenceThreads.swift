// oneDNN's thread count. Debian's libdnnl uses GNU OpenMP (libgomp), which reads OMP_NUM_THREADS
// once when it is loaded (before main) and keeps the thread-count setting per calling thread:
// omp_set_num_threads only affects parallel regions started by the thread that calls it. So the
// engine calls it on its own thread before building primitives and before every run (cheap: it
// writes a thread-local value). The symbol is looked up at run time with dlsym because libgomp is
// loaded by libdnnl, not linked by us.
#if canImport(Glibc)
import Glibc
#endif

/// Sets the default number of oneDNN (OpenMP) threads for engines created without `threads:`.
///
/// MobileNetV2 at batch 8-16 keeps every thread busy; when decoding shares the same cores, give
/// inference `cores - 1` (at least 1) so the decoder thread is not starved, or all cores when
/// decoding is cheap compared with inference (small videos).
public func setInferenceThreads(_ n: Int) {
    precondition(n > 0, "thread count must be positive")
    InferenceThreads.defaultCount = n
    InferenceThreads.apply(n)
}

enum InferenceThreads {
    nonisolated(unsafe) static var defaultCount: Int?

    private typealias SetNumThreads = @convention(c) (Int32) -> Void
    private typealias GetMaxThreads = @convention(c) () -> Int32
    private static let setter: SetNumThreads? = symbol("omp_set_num_threads")
    private static let getter: GetMaxThreads? = symbol("omp_get_max_threads")

    private static func symbol<T>(_ name: String) -> T? {
        guard let p = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { return nil }
        return unsafeBitCast(p, to: T.self)
    }

    /// Applies `n` (or the default) to the calling thread.
    static func apply(_ n: Int?) {
        guard let n = n ?? defaultCount, let setter else { return }
        setter(Int32(n))
    }

    /// OpenMP's thread count for the calling thread (what oneDNN will use), or nil without OpenMP.
    static var current: Int? { getter.map { Int($0()) } }
}

/// The number of threads oneDNN would use on the calling thread (OpenMP's max threads).
public func inferenceThreads() -> Int? { InferenceThreads.current }
