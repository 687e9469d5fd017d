import AsyncHTTPClient
import Backends
import Foundation
import ImageIngest
import JobQueue
import Logging
import NIOCore
import NIOHTTP1
import RedisQueue
import Synchronization
import Testing

@testable import Backends

private func request(
    kind: ImageRequest.Kind = .generate, prompt: String = "a red fox", width: Int = 64, height: Int = 48,
    count: Int = 1, inputs: [IngestedImage] = [], mask: IngestedImage? = nil
) -> ImageRequest {
    ImageRequest(
        jobID: "job-1", kind: kind, prompt: prompt, model: "gpt-image-1", width: width, height: height, count: count,
        quality: "high", outputFormat: "png", inputs: inputs, mask: mask, userHash: "u_1f2e")
}

private func png(width: Int, height: Int) throws -> IngestedImage {
    let bytes = try PNGCodec.encode(RGBAImage(width: width, height: height, red: 200), keepAlpha: false)
    return IngestedImage(format: "png", width: width, height: height, bytes: bytes, originalByteCount: bytes.count)
}

private func headers(_ pairs: [(String, String)]) -> HTTPHeaders { HTTPHeaders(pairs) }

private func errorBody(_ code: String, type: String = "invalid_request_error") -> [UInt8] {
    Array(#"{"error":{"code":"\#(code)","type":"\#(type)","message":"refused: \#(code)"}}"#.utf8)
}

/// Runs `body` with a fake server on a free port and a backend pointed at it; stops both after.
private func withFakeServer<T>(
    _ configure: (inout FakeImagesServer.Configuration) -> Void = { _ in },
    backend adjust: (inout OpenAIImagesBackend.Configuration) -> Void = { _ in },
    _ body: (FakeImagesServer, OpenAIImagesBackend, Int) async throws -> T
) async throws -> T {
    var configuration = FakeImagesServer.Configuration()
    configuration.latency = .milliseconds(5)
    configure(&configuration)
    let server = FakeImagesServer(configuration: configuration)
    let port = try await server.start(host: "127.0.0.1", port: 0)
    var backendConfiguration = OpenAIImagesBackend.Configuration(
        baseURL: "http://127.0.0.1:\(port)/v1", apiKey: "sk-test-secret", requestTimeout: .seconds(20))
    adjust(&backendConfiguration)
    let backend = OpenAIImagesBackend(configuration: backendConfiguration)
    do {
        let result = try await body(server, backend, port)
        await backend.shutdown()
        await server.stop()
        return result
    } catch {
        await backend.shutdown()
        await server.stop()
        throw error
    }
}

private func expectBackendError(
    _ code: BackendError.Code, _ operation: () async throws -> ImageResponse
) async -> BackendError? {
    do {
        _ = try await operation()
        Issue.record("expected \(code), got images")
        return nil
    } catch let error as BackendError {
        #expect(error.code == code, "\(error)")
        #expect(!error.message.contains("sk-test-secret"))
        #expect(!error.message.contains("a red fox"))
        return error
    } catch {
        Issue.record("expected a BackendError, got \(error)")
        return nil
    }
}

@Suite("OpenAI request bodies")
struct OpenAIRequestBodyTests {
    @Test("the generation body is sorted JSON with the user hash and no unset options")
    func generationBody() {
        let body = OpenAIRequestBody.generation(request(count: 2))
        #expect(
            String(decoding: body, as: UTF8.self)
                == #"{"model":"gpt-image-1","n":2,"output_format":"png","prompt":"a red fox","quality":"high","size":"64x48","user":"u_1f2e"}"#
        )
        let withOptions = OpenAIRequestBody.generation(
            request(), options: .init(moderation: "low", background: "transparent", outputCompression: 80))
        #expect(
            String(decoding: withOptions, as: UTF8.self)
                == #"{"background":"transparent","model":"gpt-image-1","moderation":"low","n":1,"#
                + #""output_compression":80,"output_format":"png","prompt":"a red fox","quality":"high","size":"64x48","#
                + #""user":"u_1f2e"}"#)
    }

    @Test("the edit body has the fields, one image[] part per input with its type, and the mask")
    func editBody() throws {
        let first = IngestedImage(format: "png", width: 2, height: 2, bytes: [1, 2, 3], originalByteCount: 3)
        let second = IngestedImage(format: "jpeg", width: 2, height: 2, bytes: [4, 5], originalByteCount: 2)
        let mask = IngestedImage(format: "png", width: 2, height: 2, bytes: [6], originalByteCount: 1)
        let body = OpenAIRequestBody.edit(
            request(kind: .edit, inputs: [first, second], mask: mask), boundary: "BOUNDARY")
        func field(_ name: String, _ value: String) -> String {
            "--BOUNDARY\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n"
        }
        var expected = Array(
            (field("model", "gpt-image-1") + field("prompt", "a red fox") + field("n", "1") + field("size", "64x48")
                + field("quality", "high") + field("output_format", "png") + field("user", "u_1f2e")).utf8)
        expected +=
            Array(
                "--BOUNDARY\r\nContent-Disposition: form-data; name=\"image[]\"; filename=\"image-0.png\"\r\nContent-Type: image/png\r\n\r\n"
                    .utf8) + [1, 2, 3] + Array("\r\n".utf8)
        expected +=
            Array(
                "--BOUNDARY\r\nContent-Disposition: form-data; name=\"image[]\"; filename=\"image-1.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
                    .utf8) + [4, 5] + Array("\r\n".utf8)
        expected +=
            Array(
                "--BOUNDARY\r\nContent-Disposition: form-data; name=\"mask\"; filename=\"mask.png\"\r\nContent-Type: image/png\r\n\r\n"
                    .utf8) + [6] + Array("\r\n--BOUNDARY--\r\n".utf8)
        #expect(body == expected)
        #expect(OpenAIRequestBody.contentType(boundary: "BOUNDARY") == "multipart/form-data; boundary=BOUNDARY")
        let parts = MultipartParts(body: body, boundary: "BOUNDARY").map(\.name)
        #expect(parts.filter { $0 == "image[]" }.count == 2)
        #expect(parts.last == "mask")
        let boundary = OpenAIRequestBody.makeBoundary()
        #expect(boundary.hasPrefix("imagegen-") && boundary.count == 41)
    }

    @Test("the HTTP request has the URL, method, key and optional headers")
    func httpRequest() async throws {
        let backend = OpenAIImagesBackend(
            configuration: .init(
                baseURL: "http://example.test/v1/", apiKey: "sk-x", organization: "org-1", project: "p-1"))
        let generate = backend.makeRequest(request())
        #expect(generate.url == "http://example.test/v1/images/generations")
        #expect(generate.method == .POST)
        #expect(generate.headers.first(name: "Authorization") == "Bearer sk-x")
        #expect(generate.headers.first(name: "Content-Type") == "application/json")
        #expect(generate.headers.first(name: "OpenAI-Organization") == "org-1")
        #expect(generate.headers.first(name: "OpenAI-Project") == "p-1")
        let edit = backend.makeRequest(request(kind: .edit, inputs: [try png(width: 2, height: 2)]))
        #expect(edit.url == "http://example.test/v1/images/edits")
        #expect(edit.headers.first(name: "Content-Type")?.hasPrefix("multipart/form-data; boundary=imagegen-") == true)
        #expect(!"\(backend.configuration)".contains("sk-x"))
        await backend.shutdown()
    }
}

@Suite("OpenAI error classification")
struct OpenAIErrorClassifierTests {
    let none = HTTPHeaders()

    @Test(
        "status and code map to the backend error code",
        arguments: [
            (400, "moderation_blocked", BackendError.Code.moderationBlocked),
            (400, "content_policy_violation", .moderationBlocked),
            (400, "invalid_value", .invalidRequest),
            (404, "unknown_url", .invalidRequest),
            (413, "", .invalidRequest),
            (422, "moderation_blocked", .invalidRequest),
            (401, "invalid_api_key", .unauthorized),
            (403, "unsupported_country_region_territory", .unauthorized),
            (429, "insufficient_quota", .quotaExhausted),
            (429, "billing_hard_limit_reached", .quotaExhausted),
            (429, "billing_not_active", .quotaExhausted),
            (429, "rate_limit_exceeded", .rateLimited),
            (429, "slow_down", .rateLimited),
            (429, "", .rateLimited),
            (500, "server_error", .unavailable),
            (502, "", .unavailable),
            (503, "", .unavailable),
            (504, "", .unavailable),
            (599, "", .unavailable),
        ])
    func status(status: Int, code: String, expected: BackendError.Code) {
        let error = OpenAIErrorClassifier.classify(
            status: status, body: code.isEmpty ? Array("<html>bad gateway</html>".utf8) : errorBody(code), headers: none
        )
        #expect(error.code == expected)
        #expect(error.message.contains("\(status)"))
        if !code.isEmpty { #expect(error.message.contains("refused: \(code)")) }
    }

    @Test("a quota code in the error type also counts")
    func quotaByType() {
        let body = Array(#"{"error":{"type":"insufficient_quota","message":"out of credit"}}"#.utf8)
        #expect(OpenAIErrorClassifier.classify(status: 429, body: body, headers: none).code == .quotaExhausted)
    }

    @Test("timeouts, connection failures and cancellation")
    func transport() {
        for error in [HTTPClientError.deadlineExceeded, .readTimeout, .connectTimeout] {
            #expect(OpenAIErrorClassifier.classify(transportError: error, canceled: false).code == .timeout)
        }
        #expect(
            OpenAIErrorClassifier.classify(transportError: HTTPClientError.remoteConnectionClosed, canceled: false).code
                == .unavailable)
        #expect(
            OpenAIErrorClassifier.classify(
                transportError: IOError(errnoCode: ECONNREFUSED, reason: "connect"),
                canceled: false
            ).code == .unavailable)
        #expect(
            OpenAIErrorClassifier.classify(transportError: HTTPClientError.cancelled, canceled: false).code == .canceled
        )
        #expect(OpenAIErrorClassifier.classify(transportError: CancellationError(), canceled: false).code == .canceled)
        #expect(
            OpenAIErrorClassifier.classify(transportError: HTTPClientError.readTimeout, canceled: true).code
                == .canceled)
    }

    @Test("Retry-After as seconds or an HTTP date, else the x-ratelimit-reset durations")
    func retryAfter() throws {
        let now = Date(timeIntervalSince1970: 784_111_777)  // Sun, 06 Nov 1994 08:49:37 GMT
        #expect(OpenAIErrorClassifier.parseRetryAfter("120", now: now) == 120)
        #expect(OpenAIErrorClassifier.parseRetryAfter(" 1.5 ", now: now) == 1.5)
        #expect(OpenAIErrorClassifier.parseRetryAfter("Sun, 06 Nov 1994 08:50:07 GMT", now: now) == 30)
        #expect(OpenAIErrorClassifier.parseRetryAfter("Sun, 06 Nov 1994 08:00:00 GMT", now: now) == 0)
        #expect(OpenAIErrorClassifier.parseRetryAfter("soon", now: now) == nil)
        #expect(OpenAIErrorClassifier.parseRetryAfter("-3", now: now) == nil)

        #expect(OpenAIErrorClassifier.parseDuration("1s") == 1)
        #expect(OpenAIErrorClassifier.parseDuration("6m0s") == 360)
        #expect(try #require(OpenAIErrorClassifier.parseDuration("20ms")) == 0.02)
        #expect(OpenAIErrorClassifier.parseDuration("1h2m3.5s") == 3723.5)
        #expect(OpenAIErrorClassifier.parseDuration("later") == nil)

        let rateLimited = OpenAIErrorClassifier.classify(
            status: 429, body: errorBody("rate_limit_exceeded", type: "requests"),
            headers: headers([("Retry-After", "Sun, 06 Nov 1994 08:49:47 GMT")]), now: now)
        #expect(rateLimited.code == .rateLimited)
        #expect(rateLimited.retryAfter == 10)
        let fromReset = OpenAIErrorClassifier.classify(
            status: 429, body: errorBody("rate_limit_exceeded"),
            headers: headers([("x-ratelimit-reset-requests", "1s"), ("x-ratelimit-reset-images", "6m0s")]), now: now)
        #expect(fromReset.retryAfter == 360)
        let preferRetryAfter = OpenAIErrorClassifier.retryAfter(
            headers: headers([("retry-after", "2"), ("x-ratelimit-reset-requests", "20ms")]))
        #expect(preferRetryAfter == 2)
        #expect(OpenAIErrorClassifier.retryAfter(headers: none) == nil)
    }
}

@Suite("OpenAI backend against the fake server")
struct OpenAIBackendHTTPTests {
    @Test("a generate answers decodable PNGs of the requested size, with usage")
    func generate() async throws {
        try await withFakeServer { server, backend, _ in
            let response = try await backend.generate(request(width: 64, height: 48, count: 2))
            #expect(response.images.count == 2)
            for image in response.images {
                #expect(image.format == "png")
                #expect(image.width == 64 && image.height == 48)
                let decoded = try PNGCodec.decode(image.bytes)
                #expect(decoded.width == 64 && decoded.height == 48)
            }
            #expect((response.inputTokens ?? 0) > 0)
            #expect((response.outputTokens ?? 0) > 0)
            #expect(server.stats.images == 2)
        }
    }

    @Test("an answer is read only once its share of the answer memory is free, held until released")
    func answerMemory() async throws {
        try await withFakeServer(backend: { $0.answerMemoryBytes = 100 }) { _, backend, _ in
            let first = try await backend.generate(request())
            let held = try #require(first.memory)
            #expect(held.units == 100)
            let secondDone = Mutex(false)
            let second = Task {
                let response = try await backend.generate(request())
                secondDone.withLock { $0 = true }
                return response
            }
            // The second answer arrives after about 5 ms but cannot be read while the first holds
            // the whole budget.
            try await Task.sleep(for: .milliseconds(300))
            #expect(!secondDone.withLock { $0 })
            held.release()
            let response = try await second.value
            #expect(response.images.count == 1)
            #expect(response.memory?.units == 100)
        }
    }

    @Test("an edit with two images and a mask is accepted")
    func edit() async throws {
        try await withFakeServer { server, backend, _ in
            let inputs = [try png(width: 32, height: 32), try png(width: 32, height: 32)]
            let response = try await backend.generate(
                request(kind: .edit, width: 32, height: 32, inputs: inputs, mask: try png(width: 32, height: 32)))
            #expect(response.images.count == 1)
            #expect(response.images[0].width == 32)
            let stats = server.stats
            #expect(stats.editInputs == 2)
            #expect(stats.masks == 1)
            #expect(stats.byStatus["200"] == 1)
        }
    }

    @Test("500 is unavailable")
    func serverError() async throws {
        try await withFakeServer({ $0.serverErrorRate = 1 }) { _, backend, _ in
            _ = await expectBackendError(.unavailable) { try await backend.generate(request()) }
        }
    }

    @Test("429 rate limit is rate limited with the Retry-After")
    func rateLimit() async throws {
        try await withFakeServer({
            $0.rateLimitRate = 1
            $0.retryAfterSeconds = 7
        }) { _, backend, _ in
            let error = await expectBackendError(.rateLimited) { try await backend.generate(request()) }
            #expect(error?.retryAfter == 7)
        }
    }

    @Test("429 insufficient quota is quota exhausted")
    func quota() async throws {
        try await withFakeServer({ $0.quotaRate = 1 }) { _, backend, _ in
            _ = await expectBackendError(.quotaExhausted) { try await backend.generate(request()) }
        }
    }

    @Test("moderation is moderation blocked, with the provider's message")
    func moderation() async throws {
        try await withFakeServer({ $0.blockedWords = ["fox"] }) { _, backend, _ in
            let error = await expectBackendError(.moderationBlocked) { try await backend.generate(request()) }
            #expect(error?.message.contains("safety system") == true)
        }
    }

    @Test("a refused connection is unavailable at once, not a timeout after the connect timeout")
    func refused() async throws {
        let port = try await withFakeServer { _, _, port in port }
        // With the pool's own connection retries the call would end as a timeout after 60 s.
        let backend = OpenAIImagesBackend(
            configuration: .init(
                baseURL: "http://127.0.0.1:\(port)/v1", apiKey: "sk-test-secret", connectTimeout: .seconds(60),
                requestTimeout: .seconds(120)))
        _ = await expectBackendError(.unavailable) { try await backend.generate(request()) }
        await backend.shutdown()
    }

    @Test(
        "every kind of error answer, over HTTP, maps to its code with status and Retry-After",
        arguments: [
            (400, "moderation_blocked", BackendError.Code.moderationBlocked, nil),
            (400, "content_policy_violation", .moderationBlocked, nil),
            (400, "invalid_value", .invalidRequest, nil),
            (404, "unknown_url", .invalidRequest, nil),
            (413, nil, .invalidRequest, nil),
            (401, "invalid_api_key", .unauthorized, nil),
            (403, "unsupported_country_region_territory", .unauthorized, nil),
            (429, "rate_limit_exceeded", .rateLimited, "3"),
            (429, "slow_down", .rateLimited, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (429, "insufficient_quota", .quotaExhausted, nil),
            (429, "billing_hard_limit_reached", .quotaExhausted, nil),
            (429, "billing_not_active", .quotaExhausted, nil),
            (500, "server_error", .unavailable, nil),
            (502, nil, .unavailable, nil),
            (503, "service_unavailable", .unavailable, "2"),
            (504, nil, .unavailable, nil),
        ] as [(Int, String?, BackendError.Code, String?)])
    func everyRow(status: Int, code: String?, expected: BackendError.Code, retryAfter: String?) async throws {
        try await withFakeServer({
            $0.forcedError = .init(status: status, code: code, retryAfter: retryAfter)
        }) { server, backend, _ in
            let error = await expectBackendError(expected) { try await backend.generate(request()) }
            #expect(error?.status == status)
            if retryAfter == "3" || retryAfter == "2" { #expect(error?.retryAfter == Double(retryAfter ?? "")) }
            if retryAfter?.hasPrefix("Sun") == true { #expect(error?.retryAfter == 0) }  // a date in the past
            if retryAfter == nil { #expect(error?.retryAfter == nil) }
            if expected == .moderationBlocked { #expect(error?.categories == []) }
            #expect(server.stats.byStatus[String(status)] == 1)
        }
    }

    @Test("a moderation refusal carries the provider's categories")
    func moderationCategories() async throws {
        try await withFakeServer({
            $0.blockedWords = ["fox"]
            $0.moderationCategories = ["violence", "self-harm/intent"]
        }) { _, backend, _ in
            let error = await expectBackendError(.moderationBlocked) { try await backend.generate(request()) }
            #expect(error?.categories == ["violence", "self-harm/intent"])
        }
        let structured = Array(
            #"{"error":{"code":"content_policy_violation","message":"no","categories":{"sexual":true,"hate":false,"violence":true}}}"#
                .utf8)
        let error = OpenAIErrorClassifier.classify(status: 400, body: structured, headers: HTTPHeaders())
        #expect(error.categories == ["sexual", "violence"])
        #expect(
            OpenAIErrorClassifier.moderationCategories(in: "refused. safety_violations=[Sexual, <b>x</b>]") == [
                "sexual"
            ])
        #expect(OpenAIErrorClassifier.moderationCategories(in: "refused") == [])
    }

    @Test("an unanswered call times out after the request timeout")
    func timeout() async throws {
        try await withFakeServer({ $0.timeoutRate = 1 }, backend: { $0.requestTimeout = .milliseconds(500) }) {
            server, backend, _ in
            let start = ContinuousClock.now
            _ = await expectBackendError(.timeout) { try await backend.generate(request()) }
            // The server never answers: without the timeout the call would end only with the test.
            // The bound is loose, a loaded machine may be slow to notice a 500 ms timeout.
            #expect(ContinuousClock.now - start < .seconds(10))
            #expect(server.stats.timeouts == 1)
        }
    }

    @Test("canceling the task aborts a slow call within a second")
    func cancellation() async throws {
        try await withFakeServer({ $0.latency = .seconds(10) }) { _, backend, _ in
            let task = Task { try await backend.generate(request()) }
            try await Task.sleep(for: .milliseconds(300))
            let canceledAt = ContinuousClock.now
            task.cancel()
            let result = await task.result
            #expect(ContinuousClock.now - canceledAt < .seconds(1))
            guard case .failure(let error as BackendError) = result else {
                Issue.record("expected a BackendError, got \(result)")
                return
            }
            #expect(error.code == .canceled)
        }
    }

    @Test("the fake server's hard limit answers 429 and counts it in /stats")
    func hardLimit() async throws {
        try await withFakeServer({
            $0.requestsPerMinute = 2
            $0.imagesPerMinute = 100
        }) { server, backend, port in
            _ = try await backend.generate(request())
            _ = try await backend.generate(request())
            let error = await expectBackendError(.rateLimited) { try await backend.generate(request()) }
            #expect((error?.retryAfter ?? 0) >= 1)

            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            let response = try await client.execute(
                HTTPClientRequest(url: "http://127.0.0.1:\(port)/stats"), timeout: .seconds(5))
            let body = try await response.body.collect(upTo: 1 << 20)
            try await client.shutdown()
            let stats = try JSONDecoder().decode(FakeImagesServer.Stats.self, from: Data(body.readableBytesView))
            #expect(stats.requests == 3)
            #expect(stats.overLimit == 1)
            #expect(stats.byStatus["429"] == 1)
            #expect(stats.byStatus["200"] == 2)
            #expect(stats == server.stats)
        }
    }

    @Test("the image limit counts images, not calls")
    func imageLimit() async throws {
        try await withFakeServer({ $0.imagesPerMinute = 3 }) { server, backend, _ in
            _ = try await backend.generate(request(count: 2))
            _ = await expectBackendError(.rateLimited) { try await backend.generate(request(count: 2)) }
            _ = try await backend.generate(request(count: 1))
            #expect(server.stats.overLimit == 1)
            #expect(server.stats.images == 3)
        }
    }
}

@Suite("OpenAI backend in a worker")
struct OpenAIWorkerTests {
    /// Waits until `condition` holds, checking every 20 ms, for at most `timeout`.
    private func eventually(
        timeout: Duration = .seconds(20), _ condition: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestFailure("the condition did not hold within \(timeout)")
    }

    @Test("a provider rate limit spends no attempt and pauses another worker's claim")
    func rateLimitPausesEveryWorker() async throws {
        var settings = QueueSettings()
        settings.pauseJitter = .zero
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        try await withFakeServer({
            $0.rateLimitRate = 1
            $0.retryAfterSeconds = 30
        }) { server, backend, _ in
            let worker = RunningWorker(queue: fixture.queue, blobs: fixture.blobs, backend: backend)
            let id = try await fixture.queue.enqueue(JobSpec(user: "ann", prompt: "a lighthouse", size: "64x64")).jobID
            try await eventually { try await fixture.queue.backendState().rateLimits >= 1 }
            try await eventually { try await fixture.queue.status(jobID: id)?.state == .queued }
            try await worker.stop()
            let record = try #require(try await fixture.queue.status(jobID: id))
            #expect(record.attempts == 0)
            #expect(record.errorCode == "rate_limited")
            let other = try await fixture.queue.claim(workerID: "another-worker", limit: 4)
            #expect(other.jobs.isEmpty)
            #expect(try #require(other.nextDueIn) > .seconds(20))
            #expect(server.stats.requests == 1)  // the paused worker did not call again
        }
    }

    @Test("a provider quota answer stops claiming, alerts, and fails nothing")
    func quotaStopsClaiming() async throws {
        var settings = QueueSettings()
        settings.globalInFlightCap = 1
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        try await withFakeServer({ $0.quotaRate = 1 }) { server, backend, _ in
            let logs = LogRecorder()
            var logger = Logger(label: "imagegen.test.quota") { _ in logs }
            logger.logLevel = .trace
            let worker = RunningWorker(queue: fixture.queue, blobs: fixture.blobs, backend: backend, logger: logger)
            var ids: [String] = []
            for user in ["ann", "bob", "cat"] {
                ids.append(
                    try await fixture.queue.enqueue(JobSpec(user: user, prompt: "a lighthouse", size: "64x64")).jobID)
            }
            try await eventually { try await fixture.queue.backendState().quotaAnswers >= 1 }
            try await eventually { try await fixture.queue.stats().active == 0 }
            try await worker.stop()
            #expect(try await fixture.queue.backendState().breaker == .open)
            for id in ids {
                let record = try #require(try await fixture.queue.status(jobID: id))
                #expect(record.state == .queued)
                #expect(record.attempts == 0)
            }
            #expect(try await fixture.queue.claim(workerID: "another-worker", limit: 4).jobs.isEmpty)
            #expect(server.stats.requests == 1)
            #expect(logs.lines.contains { $0.hasPrefix("error") && $0.contains("quota exhausted") })
            #expect(!logs.lines.contains { $0.contains("a lighthouse") })
        }
    }

    @Test("moderation is terminal, with the categories in the failed event")
    func moderationCategoriesInEvent() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        try await withFakeServer({
            $0.moderationRate = 1
            $0.moderationCategories = ["violence", "hate"]
        }) { _, backend, _ in
            let worker = RunningWorker(queue: fixture.queue, blobs: fixture.blobs, backend: backend)
            let id = try await fixture.queue.enqueue(JobSpec(user: "ann", prompt: "a lighthouse", size: "64x64")).jobID
            let record = try await fixture.waitUntilFinished(id)
            try await worker.stop()
            #expect(record.state == .failed)
            #expect(record.attempts == 1)
            let failed = try #require(try await fixture.events().first { $0.jobID == id && $0.type == "failed" })
            #expect(failed.fields["code"] == "moderation_blocked")
            #expect(failed.fields["categories"] == "violence,hate")
        }
    }

    @Test("a worker with the OpenAI backend completes a job; a moderated job fails terminally")
    func endToEnd() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        try await withFakeServer({ $0.blockedWords = ["forbidden"] }) { server, backend, _ in
            let worker = RunningWorker(queue: fixture.queue, blobs: fixture.blobs, backend: backend)
            let good = try await fixture.queue.enqueue(
                JobSpec(user: "ann", prompt: "a lighthouse", size: "64x48", n: 2)
            )
            .jobID
            let bad = try await fixture.queue.enqueue(JobSpec(user: "bob", prompt: "a forbidden thing", size: "64x64"))
                .jobID

            let record = try await fixture.waitUntilFinished(good)
            #expect(record.state == .succeeded)
            let outputs = try #require(record.result?.outputs)
            #expect(outputs.count == 2)
            for output in outputs {
                let bytes = try #require(try await fixture.blobs.get(output.key))
                #expect(try PNGCodec.decode(bytes).width == 64)
            }
            let refused = try await fixture.waitUntilFinished(bad)
            #expect(refused.state == .failed)
            #expect(refused.errorCode == "moderation_blocked")
            #expect(refused.attempts == 1)
            #expect(server.stats.byStatus["400"] == 1)
            try await worker.stop()
        }
    }
}
