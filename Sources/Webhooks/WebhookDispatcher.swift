import AsyncHTTPClient
import Foundation
import JobQueue
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// Sends the webhooks the queue recorded, as a swift-service-lifecycle `Service`.
///
/// The delivery state lives in the queue (Redis), not here: the dispatcher claims due deliveries
/// with a lease, sends each signed request once, and reports the outcome. A dispatcher that dies
/// mid-delivery loses nothing: its lease ends and another claims the same delivery again, with the
/// same `webhook-id` and attempt number. Receivers de-duplicate by `webhook-id`.
///
/// Lifecycle: claim up to the free slots; when nothing is due, block in the queue's wake-up wait
/// until a delivery is recorded or the next one falls due (no polling). On graceful shutdown it
/// stops claiming and lets requests in flight finish (each ends within the request timeout); the
/// HTTP client is shut down last. On cancellation requests are abandoned unreported and come back
/// when their lease ends.
public final class WebhookDispatcher: Service, Sendable {
    /// How the dispatcher works; every field has a default.
    public struct Configuration: Sendable {
        /// Names this dispatcher's leases. Default `webhooks-<host>-<random>`.
        public var dispatcherID: String =
            "webhooks-\(ProcessInfo.processInfo.hostName)-\(UInt32.random(in: 0...UInt32.max))"
        /// Requests in flight at once. Default 8.
        public var concurrency: Int = 8
        /// The longest one request may take, connection included. Default 10 s.
        public var requestTimeout: Duration = .seconds(10)
        /// How long a claimed delivery stays leased; must exceed the request timeout plus the
        /// policy's resolution timeout. Default 60 s.
        public var lease: Duration = .seconds(60)
        /// The longest wait for work before claiming again. Default 5 s.
        public var idleWait: Duration = .seconds(5)
        /// When failed attempts are tried again.
        public var schedule = WebhookRetrySchedule()
        /// Which targets may be called (SSRF guard).
        public var policy = WebhookTargetPolicy()
        /// The most bytes of an answer read (the rest is dropped). Default 64 KiB.
        public var maxResponseBytes: Int = 64 * 1024
        /// The `User-Agent` header. Default `imagegen-webhooks/1`.
        public var userAgent = "imagegen-webhooks/1"

        public init() {}
    }

    private let configuration: Configuration
    private let queue: any WebhookDeliveryQueue
    private let signer: WebhookSigner
    private let logger: Logger

    /// A dispatcher; nothing runs and no connection opens until ``run()``.
    public init(
        configuration: Configuration, queue: any WebhookDeliveryQueue, signer: WebhookSigner, logger: Logger
    ) {
        self.configuration = configuration
        self.queue = queue
        self.signer = signer
        var logger = logger
        logger[metadataKey: "webhooks.dispatcher"] = "\(configuration.dispatcherID)"
        self.logger = logger
    }

    /// The HTTP client of one ``run()``, on NIO's shared event loops: never follows redirects,
    /// never decompresses.
    private func makeClient() -> HTTPClient {
        var clientConfiguration = HTTPClient.Configuration()
        clientConfiguration.redirectConfiguration = .disallow
        clientConfiguration.decompression = .disabled
        clientConfiguration.timeout = .init(
            connect: .milliseconds(min(configuration.requestTimeout.milliseconds, 5000)),
            read: .milliseconds(configuration.requestTimeout.milliseconds))
        clientConfiguration.connectionPool = .init(
            idleTimeout: .seconds(30),
            concurrentHTTP1ConnectionsPerHostSoftLimit: max(1, configuration.concurrency))
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
    }

    public func run() async throws {
        logger.info(
            "webhook dispatcher started",
            metadata: [
                "webhooks.concurrency": "\(configuration.concurrency)",
                "webhooks.allow_private": "\(configuration.policy.allowPrivateTargets)",
            ])
        let client = makeClient()
        let running = InFlightCount()
        let (freed, freedContinuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        await withDiscardingTaskGroup { group in
            var failures = 0
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                let free = configuration.concurrency - running.value
                if free <= 0 {
                    await cancelWhenGracefulShutdown {
                        for await _ in freed where running.value < self.configuration.concurrency {
                            return
                        }
                    }
                    continue
                }
                let claim: WebhookClaim
                do {
                    claim = try await queue.claimWebhooks(
                        dispatcherID: configuration.dispatcherID, limit: free, lease: configuration.lease)
                    failures = 0
                } catch {
                    failures += 1
                    if failures == 1 || failures % 50 == 0 {
                        logger.warning("webhook claim failed; retrying", metadata: ["error": "\(error)"])
                    }
                    let backoff = Duration.milliseconds(min(2000, 50 << min(failures, 6)))
                    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: backoff) }
                    continue
                }
                for delivery in claim.deliveries {
                    running.add(1)
                    group.addTask {
                        await self.attempt(delivery, client: client)
                        running.add(-1)
                        freedContinuation.yield()
                    }
                }
                if claim.deliveries.count < free {
                    let wait = min(claim.nextDueIn ?? configuration.idleWait, configuration.idleWait)
                    do {
                        try await cancelWhenGracefulShutdown {
                            try await self.queue.waitForWebhooks(timeout: max(wait, .milliseconds(10)))
                        }
                    } catch {
                        if !(error is CancellationError) && !Task.isShuttingDownGracefully {
                            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(200)) }
                        }
                    }
                }
            }
        }
        freedContinuation.finish()
        try? await client.shutdown()
        logger.info("webhook dispatcher stopped")
    }

    /// Makes one attempt and reports it; reports nothing when the task was canceled (the lease
    /// runs out and the delivery is claimed again).
    func attempt(_ delivery: WebhookDelivery, client: HTTPClient) async {
        var logger = self.logger
        logger[metadataKey: "job.id"] = "\(delivery.jobID)"
        logger[metadataKey: "webhook.id"] = "\(delivery.messageID)"
        logger[metadataKey: "webhook.attempt"] = "\(delivery.attempt)"
        let outcome = await send(delivery, client: client)
        if Task.isCancelled { return }
        Counter(label: "imagegen_webhook_attempts", dimensions: [("outcome", outcome.label)]).increment()
        switch outcome {
        case .delivered(let status):
            logger.debug("webhook delivered", metadata: ["http.status": "\(status)"])
        case .retry(let after, let status, let reason):
            logger.info(
                "webhook attempt failed; will retry",
                metadata: ["http.status": "\(status)", "reason": "\(reason)", "retry.in_ms": "\(after.milliseconds)"])
        case .failed(let status, let reason):
            logger.warning(
                "webhook given up after its last attempt",
                metadata: ["http.status": "\(status)", "reason": "\(reason)"])
        case .disableEndpoint:
            logger.warning("webhook endpoint answered 410 Gone; it gets no more deliveries")
        case .refused(let reason):
            logger.warning("webhook target refused", metadata: ["reason": "\(reason)"])
        }
        do {
            try await queue.reportWebhook(delivery, outcome: outcome)
        } catch let error as QueueError where error.code == .fenced {
            logger.info("webhook lease lost before the report; another dispatcher has it")
        } catch {
            logger.warning(
                "webhook outcome not recorded; the delivery comes back when its lease ends",
                metadata: ["error": "\(error)"])
        }
    }

    /// Checks the target, signs and sends the request, and decides what the answer means.
    func send(_ delivery: WebhookDelivery, client: HTTPClient) async -> WebhookOutcome {
        let schedule = configuration.schedule
        do {
            try await configuration.policy.check(delivery.url)
        } catch  where error.isRetryable {
            return schedule.outcome(
                status: 0, retryAfter: nil, attempt: delivery.attempt, unit: .random(in: 0..<1),
                reason: error.message)
        } catch {
            return .refused(reason: error.description)
        }
        let body = WebhookPayload(delivery).encoded()
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "User-Agent", value: configuration.userAgent)
        let timestamp = Int64(Date().timeIntervalSince1970)
        for (name, value) in signer.headers(messageID: delivery.messageID, timestamp: timestamp, body: body) {
            headers.add(name: name, value: value)
        }
        let url = delivery.url
        let timeout = configuration.requestTimeout
        let limit = configuration.maxResponseBytes
        do {
            let answer = try await withThrowingTaskGroup(of: (Int, String?)?.self) { group in
                group.addTask { [headers] in
                    var request = HTTPClientRequest(url: url)
                    request.method = .POST
                    request.headers = headers
                    request.body = .bytes(ByteBuffer(bytes: body))
                    let response = try await client.execute(request, timeout: .milliseconds(timeout.milliseconds))
                    let status = Int(response.status.code)
                    let retryAfter = response.headers.first(name: "retry-after")
                    _ = try? await response.body.collect(upTo: limit)
                    return (status, retryAfter)
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                return try await group.next() ?? nil
            }
            guard let (status, retryAfterHeader) = answer else {
                return schedule.outcome(
                    status: 0, retryAfter: nil, attempt: delivery.attempt, unit: .random(in: 0..<1),
                    reason: "no answer within \(timeout)")
            }
            let retryAfter = retryAfterHeader.flatMap { WebhookRetrySchedule.parseRetryAfter($0) }
            return schedule.outcome(
                status: status, retryAfter: retryAfter, attempt: delivery.attempt, unit: .random(in: 0..<1))
        } catch {
            return schedule.outcome(
                status: 0, retryAfter: nil, attempt: delivery.attempt, unit: .random(in: 0..<1),
                reason: "the request failed: \(type(of: error))")
        }
    }
}

/// Deliveries in flight, shared by the claim loop and the delivery tasks.
private final class InFlightCount: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func add(_ delta: Int) { count.withLock { $0 += delta } }
}

extension WebhookOutcome {
    /// The outcome's name, as reported to the queue and in metrics.
    var label: String {
        switch self {
        case .delivered: return "delivered"
        case .retry: return "retry"
        case .failed: return "failed"
        case .disableEndpoint: return "disabled"
        case .refused: return "refused"
        }
    }
}
