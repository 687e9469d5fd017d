import Foundation
import JobQueue
import RedisClient

/// Webhook deliveries on Redis: the queue records one in the same function that writes a job's
/// terminal state; dispatchers claim, report and wait through these calls.
extension RedisJobQueue: WebhookDeliveryQueue {
    public func claimWebhooks(dispatcherID: String, limit: Int, lease: Duration) async throws -> WebhookClaim {
        let reply = try await call(
            "webhook_claim",
            [RedisArgument(dispatcherID), RedisArgument(max(1, limit)), RedisArgument(Int(lease.milliseconds))])
        guard let items = reply.array, let hint = items.first?.int else {
            throw QueueError(.protocolError, "unexpected webhook_claim reply")
        }
        var deliveries: [WebhookDelivery] = []
        var index = 1
        let decoder = JSONDecoder()
        while index + 10 < items.count {
            let field = { (offset: Int) in items[index + offset].string ?? "" }
            let result = field(9).isEmpty ? nil : try? decoder.decode(JobResult.self, from: Data(field(9).utf8))
            let metadata = (try? decoder.decode([String: String].self, from: Data(field(10).utf8))) ?? [:]
            deliveries.append(
                WebhookDelivery(
                    jobID: field(0), messageID: field(3), token: field(1), attempt: items[index + 2].int ?? 1,
                    url: field(4), state: field(5), user: field(6), atMS: Int64(field(7)) ?? 0,
                    errorCode: field(8).isEmpty ? nil : field(8), result: result, metadata: metadata))
            index += 11
        }
        return WebhookClaim(deliveries: deliveries, nextDueIn: hint >= 0 ? .milliseconds(hint) : nil)
    }

    public func reportWebhook(_ delivery: WebhookDelivery, outcome: WebhookOutcome) async throws {
        let (name, delay, status, reason): (String, Duration, Int, String)
        switch outcome {
        case .delivered(let code): (name, delay, status, reason) = ("delivered", .zero, code, "")
        case .retry(let after, let code, let why): (name, delay, status, reason) = ("retry", after, code, why)
        case .failed(let code, let why): (name, delay, status, reason) = ("failed", .zero, code, why)
        case .disableEndpoint(let code): (name, delay, status, reason) = ("disabled", .zero, code, "gone")
        case .refused(let why): (name, delay, status, reason) = ("refused", .zero, 0, why)
        }
        _ = try await call(
            "webhook_report",
            [
                RedisArgument(delivery.jobID), RedisArgument(delivery.token), RedisArgument(name),
                RedisArgument(Int(delay.milliseconds)), RedisArgument(status),
                RedisArgument(String(reason.prefix(200))),
            ])
    }

    public func waitForWebhooks(timeout: Duration) async throws {
        let connection = webhookBlocking.withLock { connection in
            if let connection { return connection }
            let made = pool.makeBlockingConnection()
            connection = made
            return made
        }
        let seconds = max(0.01, Double(timeout.milliseconds) / 1000)
        _ = try await mapErrors {
            try await connection.sendBlocking(
                ["BLPOP", RedisArgument(keys.webhooksWake), RedisArgument(String(format: "%.3f", seconds))],
                timeout: timeout)
        }
    }

    /// Sets the deployment's default webhook URL, used for jobs without a `webhook_url`; nil or
    /// empty removes it. Jobs that end afterwards are notified there.
    public func setWebhookDefaultURL(_ url: String?) async throws {
        _ = try await call("webhook_default", [RedisArgument(url ?? "")])
    }

    /// The state of a job's webhook delivery, as stored (`status`, `attempts`, `msg`, `url`,
    /// `last_status`, …), or nil when the job has none.
    public func webhookDelivery(jobID: String) async throws -> [String: String]? {
        let reply = try await mapErrors { try await pool.send(["HGETALL", RedisArgument(keys.webhook(jobID))]) }
        let fields = RedisJobQueue.pairs(reply)
        return fields.isEmpty ? nil : fields
    }
}
