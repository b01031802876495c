import Foundation
import Logging

/// Renews one job's lease on its own thread and connection while the job runs: every third of
/// `leaseSeconds` (so two renewals may fail, e.g. across a database restart, before the lease runs
/// out). `onRenewal` is called after each successful renewal; `onLost` once if the lease turned out
/// to be another worker's (the job was taken over after an outage longer than the lease).
public final class LeaseKeeper: @unchecked Sendable {
    private let queue: JobQueue
    private let job: ClaimedJob
    private let worker: String
    private let leaseSeconds: Double
    private let log: Logger
    private let stopSignal = DispatchSemaphore(value: 0)
    private let ended = DispatchSemaphore(value: 0)
    public var onRenewal: (() -> Void)?
    public var onLost: (() -> Void)?

    /// - Parameter database: a connection of its own (not the one committing results).
    public init(database: Database, job: ClaimedJob, worker: String, leaseSeconds: Double, log: Logger) {
        queue = JobQueue(db: database)
        self.job = job; self.worker = worker; self.leaseSeconds = leaseSeconds; self.log = log
    }

    /// Starts the renewal thread.
    public func start() {
        Thread.detachNewThread { [self] in
            let period = max(0.2, leaseSeconds / 3)
            var lost = false
            while stopSignal.wait(timeout: .now() + period) == .timedOut, !lost {
                do {
                    if try queue.renew(job, worker: worker, leaseSeconds: leaseSeconds) {
                        onRenewal?()
                    } else {
                        lost = true
                        log.warning("job \(job.id): the lease is no longer ours (it expired and was claimed again); the result will be offered anyway and kept only if the job is not done",
                                    metadata: ["job": "\(job.id)", "input.path": "\(job.input)"])
                        onLost?()
                    }
                } catch {
                    log.warning("job \(job.id): cannot renew the lease: \(error)", metadata: ["job": "\(job.id)"])
                }
            }
            ended.signal()
        }
    }

    /// Stops renewing (the job finished); returns when the thread ended.
    public func stop() {
        stopSignal.signal()
        ended.wait()
    }
}
