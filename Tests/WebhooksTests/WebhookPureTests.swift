import Foundation
import JobQueue
import Testing

@testable import Webhooks

@Suite("Webhook signatures")
struct WebhookSignerTests {
    @Test("the Standard Webhooks example vector")
    func specVector() throws {
        // The example of the Standard Webhooks specification and its reference libraries.
        let secret = try WebhookSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        let signer = WebhookSigner(secrets: [secret])
        let body = Array(#"{"test": 2432232314}"#.utf8)
        #expect(
            signer.signature(messageID: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: body)
                == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    }

    @Test("rotation: one signature per secret; either secret verifies; a changed byte does not")
    func rotation() throws {
        let old = try WebhookSecret(WebhookSecret.generate())
        let new = try WebhookSecret(WebhookSecret.generate())
        let other = try WebhookSecret(WebhookSecret.generate())
        let signer = WebhookSigner(secrets: [new, old])
        let body = Array(#"{"type":"job.succeeded"}"#.utf8)
        let header = signer.signature(messageID: "msg_1", timestamp: 1_700_000_000, body: body)
        #expect(header.split(separator: " ").count == 2)
        #expect(header.split(separator: " ").allSatisfy { $0.hasPrefix("v1,") })
        for secret in [old, new] {
            #expect(
                WebhookSigner.verify(
                    messageID: "msg_1", timestamp: 1_700_000_000, body: body, header: header, secrets: [secret]))
        }
        #expect(
            !WebhookSigner.verify(
                messageID: "msg_1", timestamp: 1_700_000_000, body: body, header: header, secrets: [other]))
        var tampered = body
        tampered[tampered.count - 2] ^= 1
        #expect(
            !WebhookSigner.verify(
                messageID: "msg_1", timestamp: 1_700_000_000, body: tampered, header: header, secrets: [new]))
        #expect(
            !WebhookSigner.verify(
                messageID: "msg_1", timestamp: 1_700_000_001, body: body, header: header, secrets: [new]))
    }

    @Test("secrets: whsec_ base64 of at least 16 bytes; lists split on spaces; never printed")
    func secrets() throws {
        #expect(throws: WebhookError.self) { try WebhookSecret("whsec_not base64!") }
        #expect(throws: WebhookError.self) { try WebhookSecret("whsec_c2hvcnQ=") }  // "short"
        let text = "\(WebhookSecret.generate()) \n \(WebhookSecret.generate())\n"
        let list = try WebhookSecret.parseList(text)
        #expect(list.count == 2)
        #expect(throws: WebhookError.self) { try WebhookSecret.parseList("  \n") }
        let raw = WebhookSecret.generate()
        let secret = try WebhookSecret(raw)
        #expect(!"\(secret)".contains(raw.dropFirst(6)))
        #expect(!String(reflecting: secret).contains(raw.dropFirst(6)))
    }
}

@Suite("Webhook retry schedule")
struct WebhookScheduleTests {
    @Test("the waits grow over about a day, each within its jitter band, then the delivery is given up")
    func schedule() {
        let schedule = WebhookRetrySchedule()
        #expect(schedule.maxAttempts == schedule.delays.count + 1)
        let total = schedule.delays.reduce(Duration.zero, +)
        #expect(total >= .seconds(20 * 3600) && total <= .seconds(36 * 3600))
        for (index, base) in schedule.delays.enumerated() {
            let attempt = index + 1
            let low = schedule.delay(afterAttempt: attempt, unit: 0)!
            let mid = schedule.delay(afterAttempt: attempt, unit: 0.5)!
            let high = schedule.delay(afterAttempt: attempt, unit: 0.999_999)!
            #expect(mid == base)
            #expect(low < base && high > base)
            #expect(Double(low.milliseconds) >= Double(base.milliseconds) * (1 - schedule.jitter) - 1)
            #expect(Double(high.milliseconds) <= Double(base.milliseconds) * (1 + schedule.jitter) + 1)
            if index > 0 { #expect(mid >= schedule.delays[index - 1]) }
        }
        #expect(schedule.delay(afterAttempt: schedule.maxAttempts, unit: 0.5) == nil)
        #expect(schedule.delay(afterAttempt: 0, unit: 0.5) == nil)
    }

    @Test("Retry-After lengthens a wait, never shortens it, and is capped")
    func retryAfter() {
        let schedule = WebhookRetrySchedule(delays: [.seconds(5), .seconds(60)], jitter: 0)
        #expect(schedule.delay(afterAttempt: 1, unit: 0.5, retryAfter: .seconds(120)) == .seconds(120))
        #expect(schedule.delay(afterAttempt: 2, unit: 0.5, retryAfter: .seconds(1)) == .seconds(60))
        #expect(
            schedule.delay(afterAttempt: 1, unit: 0.5, retryAfter: .seconds(10 * 86_400)) == schedule.maxRetryAfter)
        #expect(WebhookRetrySchedule.parseRetryAfter("120") == .seconds(120))
        let now = Date(timeIntervalSince1970: 784_111_777)  // Sun, 06 Nov 1994 08:49:37 GMT
        #expect(
            WebhookRetrySchedule.parseRetryAfter("Sun, 06 Nov 1994 08:51:37 GMT", now: now) == .seconds(120))
        #expect(WebhookRetrySchedule.parseRetryAfter("soon") == nil)
    }

    @Test("answers: 2xx delivered, 410 disables, others and no answer retry until the last attempt")
    func outcomes() {
        let schedule = WebhookRetrySchedule(delays: [.seconds(5), .seconds(60)], jitter: 0)
        for status in [200, 201, 204, 299] {
            #expect(
                schedule.outcome(status: status, retryAfter: nil, attempt: 1, unit: 0.5) == .delivered(status: status))
        }
        #expect(schedule.outcome(status: 410, retryAfter: nil, attempt: 1, unit: 0.5) == .disableEndpoint(status: 410))
        for status in [0, 301, 302, 400, 404, 429, 500, 503] {
            guard
                case .retry(let after, status, _) = schedule.outcome(
                    status: status, retryAfter: nil, attempt: 1, unit: 0.5)
            else {
                Issue.record("status \(status) should retry")
                continue
            }
            #expect(after == .seconds(5))
        }
        guard
            case .retry(let after, 429, _) = schedule.outcome(
                status: 429, retryAfter: .seconds(30), attempt: 1, unit: 0.5)
        else {
            Issue.record("429 should retry")
            return
        }
        #expect(after == .seconds(30))
        guard case .failed(500, _) = schedule.outcome(status: 500, retryAfter: nil, attempt: 3, unit: 0.5) else {
            Issue.record("the last attempt should give up")
            return
        }
    }
}

@Suite("Webhook target policy (SSRF)")
struct WebhookTargetPolicyTests {
    @Test(
        "forbidden address classes are refused",
        arguments: [
            ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
            ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("172.31.255.254", "private"),
            ("192.168.1.1", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
            ("100.64.0.1", "shared (CGNAT)"), ("100.127.255.255", "shared (CGNAT)"),
            ("fc00::1", "unique-local"), ("fd12:3456::1", "unique-local"), ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"), ("ff02::1", "multicast"), ("0.0.0.0", "unspecified"),
            ("::", "unspecified"), ("255.255.255.255", "reserved"), ("::ffff:127.0.0.1", "IPv4-embedded loopback"),
            ("::ffff:10.0.0.1", "IPv4-embedded private"), ("::ffff:169.254.169.254", "IPv4-embedded link-local"),
            ("::127.0.0.1", "IPv4-embedded loopback"), ("64:ff9b::192.168.0.1", "IPv4-embedded private"),
            ("fec0::1", "site-local"),
        ])
    func forbidden(address: String, reason: String) throws {
        let parsed = try #require(IPAddress(address))
        #expect(WebhookTargetPolicy.forbiddenReason(parsed) == reason)
    }

    @Test(
        "public addresses pass",
        arguments: [
            "93.184.216.34", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111",
            "::ffff:8.8.8.8", "192.169.0.1", "11.0.0.1",
        ])
    func allowed(address: String) throws {
        #expect(WebhookTargetPolicy.forbiddenReason(try #require(IPAddress(address))) == nil)
    }

    @Test("URLs: http and https only, with a host, without credentials; literal addresses checked before any request")
    func urls() async throws {
        let policy = WebhookTargetPolicy()
        for url in [
            "ftp://example.com/x", "file:///etc/passwd", "gopher://h/", "example.com/hook", "http:///nohost",
            "https://user:pw@example.com/hook",
        ] {
            await #expect(throws: WebhookError.self) { try await policy.check(url) }
        }
        for url in [
            "http://127.0.0.1:8080/hook", "http://[::1]/hook", "https://169.254.169.254/latest/meta-data",
            "http://[::ffff:127.0.0.1]/", "http://10.0.0.5/", "http://0.0.0.0:80/",
        ] {
            do {
                try await policy.check(url)
                Issue.record("\(url) passed")
            } catch {
                #expect(error.code == .forbiddenTarget, "\(url)")
            }
        }
        // `localhost` resolves (off the cooperative pool) to loopback addresses only.
        await #expect(throws: WebhookError(.forbiddenTarget, "the host resolves to a loopback address")) {
            try await policy.check("http://localhost:9/hook")
        }
        // Allowed when configured so (tests, closed networks).
        try await WebhookTargetPolicy(allowPrivateTargets: true).check("http://127.0.0.1:8080/hook")
        #expect(try policy.target(of: "https://example.com/h").port == 443)
        #expect(try policy.target(of: "http://[::1]:81/h") == .init(scheme: "http", host: "::1", port: 81))
    }
}

@Suite("Webhook payload")
struct WebhookPayloadTests {
    @Test("the example request of docs/webhooks.md is what the dispatcher sends for that job, and verifies")
    func documentedExample() throws {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        let doc = try String(contentsOf: root.appendingPathComponent("docs/webhooks.md"), encoding: .utf8)
        let lines = doc.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let body = try #require(lines.first { $0.hasPrefix("{\"data\":") })
        let signature = try #require(lines.first { $0.hasPrefix("webhook-signature: ") })
            .dropFirst("webhook-signature: ".count)
        let result = JobResult(
            outputs: [
                OutputReference(key: "output:000000000042:0", format: "png", width: 1024, height: 1024, bytes: 812_345)
            ],
            usage: .init(images: 1, size: "1024x1024", model: "gpt-image-1.5", inputTokens: 52, outputTokens: 4160),
            durations: .init(ingestMS: 0, backendMS: 9120, storeMS: 14))
        let delivery = WebhookDelivery(
            jobID: "000000000042", messageID: "msg_000000000042_1764395009260-0", token: "1", attempt: 1,
            url: "https://example.com/h", state: "succeeded", user: "u42", atMS: 1_764_395_009_260, result: result,
            metadata: ["order": "o-17"])
        #expect(WebhookPayload(delivery).encoded() == Array(body.utf8))
        let secret = try WebhookSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        #expect(
            WebhookSigner(secrets: [secret]).signature(
                messageID: delivery.messageID, timestamp: 1_764_395_009, body: Array(body.utf8)) == signature)
    }

    @Test("references only: outputs, usage, error code, metadata; the same delivery gives the same bytes")
    func payload() throws {
        let result = JobResult(
            outputs: [OutputReference(key: "output:000000000042:0", format: "png", width: 64, height: 64, bytes: 812)],
            usage: .init(images: 1, size: "64x64", model: "m", inputTokens: 5, outputTokens: 9),
            durations: .init(ingestMS: 1, backendMS: 2, storeMS: 3))
        let delivery = WebhookDelivery(
            jobID: "000000000042", messageID: "msg_000000000042_1-0", token: "7", attempt: 1,
            url: "https://example.com/h", state: "succeeded", user: "u42", atMS: 1_764_395_009_260, result: result,
            metadata: ["order": "o-17"])
        let body = WebhookPayload(delivery).encoded()
        #expect(body == WebhookPayload(delivery).encoded())
        let object = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        #expect(object["type"] as? String == "job.succeeded")
        #expect(object["timestamp"] as? String == "2025-11-29T05:43:29.260Z")
        let data = try #require(object["data"] as? [String: Any])
        #expect(data["job_id"] as? String == "000000000042")
        #expect(data["state"] as? String == "succeeded")
        #expect((data["outputs"] as? [[String: Any]])?.first?["key"] as? String == "output:000000000042:0")
        #expect((data["usage"] as? [String: Any])?["images"] as? Int == 1)
        #expect((data["metadata"] as? [String: String]) == ["order": "o-17"])
        #expect(data["prompt"] == nil)

        var failed = delivery
        failed.state = "failed"
        failed.result = nil
        failed.errorCode = "moderation_blocked"
        let failedObject = try #require(
            try JSONSerialization.jsonObject(with: Data(WebhookPayload(failed).encoded())) as? [String: Any])
        let failedData = try #require(failedObject["data"] as? [String: Any])
        #expect(failedObject["type"] as? String == "job.failed")
        #expect(failedData["error_code"] as? String == "moderation_blocked")
        #expect((failedData["outputs"] as? [Any])?.isEmpty == true)
    }
}
