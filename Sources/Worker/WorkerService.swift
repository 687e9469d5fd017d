import Backends
import ImageIngest
import JobQueue
import Logging
import Metrics
import ServiceLifecycle
import Storage
import ThreadSupport

/// The worker: claims jobs while it has free slots and runs each through ``JobRunner``.
///
/// Lifecycle, in order:
/// 1. the lease renewer thread starts; a listener stops jobs canceled elsewhere;
/// 2. the claim loop claims up to the free slots, and when nothing is claimable blocks in
///    the queue's wake-up wait (no polling) with its next claim pipelined behind the wait; a
///    slot whose job succeeds claims its next job with the completion and runs it at once, so a
///    busy worker's slots refill without the claim loop;
/// 3. on graceful shutdown (SIGTERM/SIGINT through `ServiceGroup`) it stops claiming, lets
///    running jobs finish for ``WorkerConfiguration/drainGracePeriod``, then stops the rest,
///    which hand their jobs back at once; the renewer stops last and the worker unregisters.
public final class WorkerService: Service, Sendable {
    /// The driver type the worker needs: the queue operations plus thread-based lease renewal.
    public typealias Queue = QueueDriver & BlockingLeaseRenewal

    private let configuration: WorkerConfiguration
    private let queue: any Queue
    private let runner: JobRunner
    private let logger: Logger

    public init(
        configuration: WorkerConfiguration, queue: any Queue, backend: any ImageModelBackend,
        ingestor: ImageIngestor, blobs: any BlobStore, logger: Logger
    ) {
        var logger = logger
        logger[metadataKey: "worker.id"] = "\(configuration.workerID)"
        self.configuration = configuration
        self.queue = queue
        self.logger = logger
        self.runner = JobRunner(
            configuration: configuration, queue: queue, backend: backend, ingestor: ingestor, blobs: blobs,
            classifier: FailureClassifier(retryPolicy: configuration.retryPolicy),
            hasher: UserHasher(salt: configuration.userHashSalt), logger: logger,
            storingQueue: configuration.outputsWithCompletion ? queue as? any QueueStoringOutputs : nil)
    }

    public func run() async throws {
        let jobs = RunningJobs()
        let renewer = LeaseRenewer(
            interval: configuration.heartbeatInterval, workerID: configuration.workerID, queue: queue, jobs: jobs,
            logger: logger)
        renewer.start()
        logger.info(
            "worker started",
            metadata: [
                "worker.slots": "\(configuration.slots)", "worker.executor": "\(configuration.jobExecutor.rawValue)",
                "backend": "\(runner.backend.name)",
            ])
        let cancellations = queue.canceledJobs()
        // The claim loop, the slots and their child tasks inherit the preference.
        let executor: (any TaskExecutor)? = configuration.jobExecutor == .taskLoop ? TaskLoop.shared : nil
        await withTaskExecutorPreference(executor) {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { [logger] in
                    for await jobID in cancellations where jobs.stop(jobID, reason: .canceled) {
                        logger.info("job canceled while running; stopping it", metadata: ["job.id": "\(jobID)"])
                    }
                }
                await claimLoop(jobs: jobs)
                group.cancelAll()
            }
        }
        jobs.finish()
        renewer.stop(unregister: true)
        logger.info("worker stopped")
    }

    private func claimLoop(jobs: RunningJobs) async {
        let gauge = Gauge(label: "imagegen_worker_running_jobs")
        await withDiscardingTaskGroup { group in
            func start(_ claimed: [ClaimedJob]) {
                for job in claimed {
                    let signal = jobs.add(job.lease)
                    gauge.record(jobs.count)
                    group.addTask { [runner] in
                        // The slot runs jobs one after another while each completion claims the next.
                        var current = job
                        var currentSignal = signal
                        while true {
                            let claimNext = !Task.isShuttingDownGracefully && !Task.isCancelled
                            guard let next = await runner.run(current, signal: currentSignal, claimNext: claimNext)
                            else { break }
                            currentSignal = jobs.replace(current.lease.jobID, with: next.lease)
                            current = next
                        }
                        jobs.remove(current.lease.jobID)
                        gauge.record(jobs.count)
                    }
                }
            }
            var failures = 0
            // A claim the wake-up wait already made (pipelined behind it), and how many it asked for.
            var claimedByWait: (result: ClaimResult, asked: Int)?
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                let free = configuration.slots - jobs.count
                if free <= 0 && claimedByWait == nil {
                    await waitForSlot(jobs)
                    continue
                }
                let want = min(max(free, 0), configuration.claimBatch)
                let result: ClaimResult
                let asked: Int
                if let made = claimedByWait {
                    (result, asked) = made
                    claimedByWait = nil
                } else {
                    do {
                        result = try await queue.claim(workerID: configuration.workerID, limit: want)
                        asked = want
                        failures = 0
                    } catch {
                        failures += 1
                        if failures == 1 || failures % 50 == 0 {
                            logger.warning("claim failed; retrying", metadata: ["error": "\(error)"])
                        }
                        let backoff = RetryPolicy(baseDelay: .milliseconds(100), maxDelay: .seconds(2))
                            .delay(afterAttempt: failures, minimum: .milliseconds(20))
                        try? await cancelWhenGracefulShutdown { try await Task.sleep(for: backoff) }
                        continue
                    }
                }
                start(result.jobs)
                if result.jobs.count < asked {
                    // Nothing more is claimable now: wait for a wake-up (or a due time), with the
                    // next claim pipelined behind the wait.
                    let wait = min(result.nextDueIn ?? configuration.idleWait, configuration.idleWait)
                    let limit = min(max(configuration.slots - jobs.count, 1), configuration.claimBatch)
                    do {
                        let made = try await cancelWhenGracefulShutdown {
                            try await self.queue.waitForWork(
                                timeout: max(wait, .milliseconds(10)), thenClaim: limit,
                                workerID: self.configuration.workerID)
                        }
                        claimedByWait = (made, limit)
                    } catch {
                        if !(error is CancellationError) && !Task.isShuttingDownGracefully {
                            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(200)) }
                        }
                    }
                }
            }
            // Jobs the last wait claimed as shutdown began still run (and are drained like the rest).
            if let made = claimedByWait { start(made.result.jobs) }
            await drain(jobs)
        }
    }

    private func waitForSlot(_ jobs: RunningJobs) async {
        await cancelWhenGracefulShutdown {
            for await left in jobs.ended where left < self.configuration.slots { return }
        }
    }

    private func drain(_ jobs: RunningJobs) async {
        let running = jobs.count
        guard running > 0 else { return }
        logger.info("draining", metadata: ["worker.running": "\(running)"])
        let grace = configuration.drainGracePeriod
        let finished = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await jobs.waitUntilEmpty()
                return true
            }
            group.addTask {
                try? await Task.sleep(for: grace)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !finished {
            logger.info("grace period over; handing running jobs back", metadata: ["worker.running": "\(jobs.count)"])
            jobs.stopAll(reason: .shutdown)
        }
    }
}
