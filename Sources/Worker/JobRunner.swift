import Backends
import ImageIngest
import JobQueue
import Logging
import Metrics
import Storage

/// Runs one claimed job: load inputs → ingest → backend → store outputs → complete.
///
/// The stages of a job only compute and store; the queue is told the outcome once, at the end,
/// through the lease (complete, fail, or release on shutdown). A stopped job writes nothing
/// except, on shutdown, its release.
struct JobRunner: Sendable {
    let configuration: WorkerConfiguration
    let queue: any QueueDriver
    let backend: any ImageModelBackend
    let ingestor: ImageIngestor
    let blobs: any BlobStore
    let classifier: FailureClassifier
    let hasher: UserHasher
    let logger: Logger
    /// The queue, when it writes the outputs with the completion (see
    /// ``WorkerConfiguration/outputsWithCompletion``); decided once, when the runner is made.
    let storingQueue: (any QueueStoringOutputs)?

    /// Runs the job until it ends or `signal` stops it, and reports the outcome to the queue.
    /// With `claimNext`, a successful job's completion also claims the slot's next job, which is
    /// returned (nil when none was claimable, or the job did not succeed).
    func run(_ job: ClaimedJob, signal: CancelSignal, claimNext: Bool = false) async -> ClaimedJob? {
        let userHash = hasher.hash(job.spec.user)
        let log = JobLog(logger: logger, jobID: job.lease.jobID, userHash: userHash, attempt: job.lease.attempt)
        let started = ContinuousClock.now
        log(.debug, "job started", ["job.kind": "\(job.spec.kind.rawValue)", "job.tier": "\(job.spec.tier.rawValue)"])
        let done: Processed
        do {
            done = try await runUntilSignaled(signal) {
                try await process(job, userHash: userHash)
            }
        } catch {
            await settle(job, error: error, signal: signal, log: log)
            return nil
        }
        let result = done.result
        // Whatever happens next, the outputs are in Redis or will never be: free the answer memory.
        defer { done.memory?.release() }
        do {
            // Only the first try claims: if its reply was lost, a job it claimed returns after its lease.
            var claim = claimNext ? 1 : 0
            let next = try await reportWithRetry {
                defer { claim = 0 }
                if let storing = storingQueue, !done.pending.isEmpty {
                    return try await storing.complete(
                        job.lease, result: result, outputs: done.pending, ttl: configuration.outputTTL,
                        thenClaim: claim, workerID: configuration.workerID)
                }
                return try await queue.complete(
                    job.lease, result: result, thenClaim: claim, workerID: configuration.workerID)
            }
            Counter(label: "imagegen_jobs_total", dimensions: [("outcome", "succeeded")]).increment()
            Timer(label: "imagegen_job_duration_seconds").record(duration: ContinuousClock.now - started)
            log(
                .info, "job succeeded",
                [
                    "job.outputs": "\(result.outputs.count)",
                    "job.output_bytes": "\(result.outputs.reduce(0) { $0 + $1.bytes })",
                    "job.ms": "\((ContinuousClock.now - started).milliseconds)",
                ])
            return next.jobs.first
        } catch let error as QueueError where error.code == .fenced {
            // Canceled, purged, or recovered by another worker after the work was done (or an
            // earlier try went through and only its reply was lost). Outputs of a job this worker
            // no longer holds must not outlive it: a purged user's images would stay behind.
            let state = try? await queue.status(of: job.lease.jobID)
            if state != .succeeded {
                _ = try? await blobs.delete(result.outputs.map(\.key))
            }
            log(.warning, "result not recorded: the lease is no longer held", ["error": "\(error.message)"])
        } catch {
            log(.warning, "could not record the result; the job returns after its lease", ["error": "\(error)"])
        }
        return nil
    }

    /// A job's work, done: its result, the outputs still to be written with the completion (when
    /// the queue writes them), and the backend memory they hold.
    private struct Processed: Sendable {
        var result: JobResult
        var pending: [JobOutput]
        var memory: Budget.Reservation?
    }

    /// Runs a queue call again while Redis is unreachable, for up to about 10 s: the work is done
    /// and its outputs stored, so it is worth waiting for Redis rather than redoing the job.
    private func reportWithRetry<T>(_ call: () async throws -> T) async throws -> T {
        var attempt = 0
        let backoff = RetryPolicy(baseDelay: .milliseconds(100), maxDelay: .seconds(2))
        while true {
            do {
                return try await call()
            } catch let error as QueueError where error.isRetryable && attempt < 8 {
                attempt += 1
                try await Task.sleep(for: backoff.delay(afterAttempt: attempt, minimum: .milliseconds(50)))
            }
        }
    }

    private func settle(_ job: ClaimedJob, error: any Error, signal: CancelSignal, log: JobLog) async {
        if let reason = signal.reason ?? (Task.isCancelled ? .shutdown : nil) {
            switch reason {
            case .canceled, .leaseLost:
                Counter(label: "imagegen_jobs_total", dimensions: [("outcome", reason.rawValue)]).increment()
                log(.info, "job stopped", ["job.stop_reason": "\(reason.rawValue)"])
                // A canceled or purged job may have stored some outputs before the stop arrived.
                // (A lost lease means another worker may be writing the same keys: leave them.)
                if reason == .canceled, await isGoneOrCanceled(job.lease.jobID) {
                    _ = try? await blobs.delete(outputKeys(job))
                }
            case .shutdown:
                do {
                    try await reportWithRetry { try await queue.release(job.lease) }
                    log(.info, "job handed back on shutdown")
                } catch {
                    log(.warning, "could not hand the job back; it returns after its lease", ["error": "\(error)"])
                }
            }
            return
        }
        if let error = error as? QueueError, error.code == .fenced {
            log(.warning, "lease no longer held; result dropped", ["error": "\(error.message)"])
            return
        }
        let failure = classifier.classify(error, attempt: job.lease.attempt)
        alert(error, failure: failure, log: log)
        do {
            var state = JobState.failed
            try await reportWithRetry { state = try await queue.fail(job.lease, failure: failure) }
            Counter(label: "imagegen_jobs_total", dimensions: [("outcome", state.rawValue)]).increment()
            log(.info, "job attempt failed", ["error.code": "\(failure.code)", "job.state": "\(state.rawValue)"])
        } catch {
            log(.warning, "could not report the failure; the job returns after its lease", ["error": "\(error)"])
        }
    }

    /// Whether the job no longer exists (purged) or was canceled; false when Redis cannot say.
    private func isGoneOrCanceled(_ jobID: String) async -> Bool {
        do {
            let state = try await queue.status(of: jobID)
            return state == nil || state == .canceled
        } catch {
            return false
        }
    }

    /// Counts what the backend said about the provider, and raises the alerts an operator must see:
    /// a spent quota (claiming stops until the breaker's probe gets through) and refused
    /// credentials. Logs carry codes only, never the request.
    private func alert(_ error: any Error, failure: JobFailure, log: JobLog) {
        if let signal = failure.signal {
            Counter(label: "imagegen_backend_signals_total", dimensions: [("kind", signal.kind.rawValue)]).increment()
        }
        guard let error = error as? BackendError else { return }
        switch error.code {
        case .quotaExhausted:
            Counter(label: "imagegen_backend_alerts_total", dimensions: [("reason", "quota_exhausted")]).increment()
            log(
                .error, "backend quota exhausted: every worker stops claiming until the quota breaker's probe succeeds",
                ["backend": "\(backend.name)", "error.status": "\(error.status.map(String.init) ?? "")"])
        case .unauthorized:
            Counter(label: "imagegen_backend_alerts_total", dimensions: [("reason", "unauthorized")]).increment()
            log(
                .error, "backend refused the credentials",
                ["backend": "\(backend.name)", "error.status": "\(error.status.map(String.init) ?? "")"])
        default:
            break
        }
    }

    private func process(_ job: ClaimedJob, userHash: String) async throws -> Processed {
        let spec = job.spec
        let lease = job.lease
        let clock = ContinuousClock()

        // 1. Inputs: fetch and validate every upload before spending money on the backend.
        var inputs: [IngestedImage] = []
        var mask: IngestedImage?
        let ingestStart = clock.now
        if spec.kind == .edit {
            try await report(lease, "validating")
            for key in spec.inputs ?? [] {
                inputs.append(try await ingestor.ingest(try await load(key), role: .image))
            }
            if let maskKey = spec.mask {
                let loaded = try await ingestor.ingest(try await load(maskKey), role: .mask)
                if let first = inputs.first { try ImageIngestor.checkMask(loaded, matches: first) }
                mask = loaded
            }
        }
        let ingestTime = clock.now - ingestStart

        // 2. The model.
        try await report(lease, "generating")
        let (width, height) = spec.dimensions
        let request = ImageRequest(
            jobID: lease.jobID, kind: spec.kind == .edit ? .edit : .generate, prompt: spec.prompt,
            model: spec.model ?? configuration.defaultModel, width: width, height: height, count: spec.n ?? 1,
            quality: spec.quality ?? "auto", outputFormat: spec.outputFormat ?? "png", inputs: inputs, mask: mask,
            userHash: userHash)
        let backendStart = clock.now
        let response = try await backend.generate(request)
        let backendTime = clock.now - backendStart
        // The usage goes with the result: completing the job corrects a token budget (if any).

        // 3. Outputs, under job-scoped keys: a retry overwrites instead of adding. A queue that
        // stores them writes small ones with the completion instead.
        try await report(lease, "storing")
        let storeStart = clock.now
        var outputs: [OutputReference] = []
        var pending: [JobOutput] = []
        let withCompletion =
            storingQueue != nil
            && response.images.reduce(0) { $0 + $1.bytes.count } <= configuration.completionOutputLimit
        for (index, image) in response.images.enumerated() {
            let key = BlobKey.output(jobID: lease.jobID, index: index)
            if withCompletion {
                pending.append(JobOutput(key: key, bytes: image.bytes))
            } else {
                try await blobs.put(key, image.bytes, ttl: configuration.outputTTL)
            }
            outputs.append(
                OutputReference(
                    key: key, format: image.format, width: image.width, height: image.height, bytes: image.bytes.count))
        }
        let storeTime = clock.now - storeStart
        let result = JobResult(
            outputs: outputs,
            usage: .init(
                images: outputs.count, size: "\(width)x\(height)", model: request.model,
                inputTokens: response.inputTokens, outputTokens: response.outputTokens),
            durations: .init(
                ingestMS: Int(ingestTime.milliseconds), backendMS: Int(backendTime.milliseconds),
                storeMS: Int(storeTime.milliseconds)))
        if pending.isEmpty {
            // Stored: the backend may read the next answer into the memory these images took.
            response.memory?.release()
        }
        return Processed(result: result, pending: pending, memory: response.memory)
    }

    /// Every output key the job can have written.
    private func outputKeys(_ job: ClaimedJob) -> [String] {
        (0..<max(1, job.spec.n ?? 1)).map { BlobKey.output(jobID: job.lease.jobID, index: $0) }
    }

    private func load(_ key: String) async throws -> [UInt8] {
        guard BlobKey.isValid(key) else {
            throw InputError(code: "invalid_input", message: "upload id '\(key)' is not a valid blob key")
        }
        guard let bytes = try await blobs.get(key) else {
            throw InputError(code: "input_missing", message: "upload \(key) does not exist or has expired")
        }
        return bytes
    }

    private func report(_ lease: Lease, _ stage: String) async throws {
        guard configuration.reportProgress else { return }
        try await queue.progress(lease, stage: stage, detail: "")
    }
}

/// One job's log: the worker's logger, with the job's fields (id, user hash, attempt) added to a
/// message only when it is written. Set on the logger instead, they would cost every job a
/// metadata change at any level, and `StreamLogHandler` formats its whole metadata anew on each.
struct JobLog {
    let logger: Logger
    let jobID: String
    let userHash: String
    let attempt: Int

    func callAsFunction(
        _ level: Logger.Level, _ message: @autoclosure () -> Logger.Message,
        _ metadata: @autoclosure () -> Logger.Metadata = [:], file: String = #fileID, function: String = #function,
        line: UInt = #line
    ) {
        logger.log(
            level: level, message(),
            metadata: {
                var fields: Logger.Metadata = [
                    "job.id": "\(jobID)", "user.hash": "\(userHash)", "job.attempt": "\(attempt)",
                ]
                fields.merge(metadata()) { _, new in new }
                return fields
            }(), file: file, function: function, line: line)
    }
}
