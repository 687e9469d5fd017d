import Foundation
import JobQueue

/// The JSON body of a webhook, in the Standard Webhooks shape `{type, timestamp, data}`.
///
/// It carries references, never content: the job id and state, the output blob keys (with format,
/// size and byte count), usage for billing, the error code, and the metadata the web tier gave the
/// job. Never the prompt, never image bytes. The same delivery always encodes to the same bytes.
public struct WebhookPayload: Codable, Sendable, Equatable {
    /// What the job's `data` holds.
    public struct JobData: Codable, Sendable, Equatable {
        public var jobID: String
        public var state: String
        public var user: String
        public var outputs: [OutputReference]
        public var usage: JobResult.Usage?
        public var errorCode: String?
        public var metadata: [String: String]

        enum CodingKeys: String, CodingKey {
            case jobID = "job_id"
            case state, user, outputs, usage
            case errorCode = "error_code"
            case metadata
        }
    }

    /// `job.succeeded`, `job.failed`, `job.dead` or `job.canceled`.
    public var type: String
    /// When the job ended, ISO 8601 with milliseconds, UTC.
    public var timestamp: String
    public var data: JobData

    /// The payload of a delivery.
    public init(_ delivery: WebhookDelivery) {
        type = "job." + delivery.state
        let date = Date(timeIntervalSince1970: Double(delivery.atMS) / 1000)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        timestamp = formatter.string(from: date)
        data = JobData(
            jobID: delivery.jobID, state: delivery.state, user: delivery.user,
            outputs: delivery.result?.outputs ?? [], usage: delivery.result?.usage, errorCode: delivery.errorCode,
            metadata: delivery.metadata)
    }

    /// The body bytes: compact JSON with sorted keys.
    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)).map(Array.init) ?? Array("{}".utf8)
    }
}
