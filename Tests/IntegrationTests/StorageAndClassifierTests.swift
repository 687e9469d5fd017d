import Backends
import Foundation
import ImageIngest
import JobQueue
import Storage
import Testing
import Worker

@Suite("Blob stores")
struct BlobStoreTests {
    @Test("the file store keeps bytes until their TTL, replaces on rewrite, and sweeps expired files")
    func fileStore() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "imagegen-blobs-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try FileBlobStore(directory: directory)
        let bytes: [UInt8] = [0, 1, 2, 255]
        try await store.put("output:1:0", bytes, ttl: .seconds(60))
        #expect(try await store.get("output:1:0") == bytes)
        try await store.put("output:1:0", [9], ttl: .seconds(60))
        #expect(try await store.get("output:1:0") == [9])
        try await store.put("upload:short", bytes, ttl: .milliseconds(1))
        try await Task.sleep(for: .milliseconds(20))
        #expect(try await store.get("upload:short") == nil)
        try await store.put("upload:gone", bytes, ttl: .milliseconds(1))
        try await Task.sleep(for: .milliseconds(20))
        #expect(try await store.sweepExpired() == 1)
        #expect(try await store.delete(["output:1:0", "missing"]) == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
    }

    @Test("keys that could escape the store are refused", arguments: ["../etc/passwd", "a/b", "", ".hidden", "x y"])
    func badKeys(key: String) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "imagegen-blobs-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try FileBlobStore(directory: directory)
        await #expect(throws: BlobStoreError.self) { try await store.put(key, [1], ttl: .seconds(1)) }
    }

    @Test("the Redis store sets a TTL on every blob")
    func redisStore() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        try await fixture.blobs.put("upload:a", [1, 2, 3], ttl: .seconds(90))
        #expect(try await fixture.blobs.get("upload:a") == [1, 2, 3])
        let ttl = try await fixture.pool.send("PTTL", fixture.queue.keys.blobPrefix + "upload:a").int ?? -1
        #expect(ttl > 80_000 && ttl <= 90_000)
        #expect(try await fixture.blobs.delete(["upload:a"]) == 1)
        #expect(try await fixture.blobs.get("upload:a") == nil)
    }
}

@Suite("Failure classification")
struct FailureClassifierTests {
    let classifier = FailureClassifier(retryPolicy: RetryPolicy(baseDelay: .seconds(1), maxDelay: .seconds(8)))

    @Test("terminal errors never retry")
    func terminal() {
        let errors: [any Error] = [
            IngestError(.unsupportedFormat, "gif"), BackendError(.moderationBlocked, "no"),
            BackendError(.invalidRequest, "bad size"), BackendError(.unauthorized, "key"),
            InputError(code: "input_missing", message: "gone"),
        ]
        for error in errors { #expect(classifier.classify(error, attempt: 1).disposition == .terminal) }
        #expect(classifier.classify(IngestError(.tooManyPixels, "big"), attempt: 1).code == "too_many_pixels")
    }

    @Test("timeouts and outages retry with backoff, honouring Retry-After")
    func retryable() {
        for error in [BackendError(.timeout, "slow"), BackendError(.unavailable, "503", retryAfter: 5)] {
            guard case .retry(let after) = classifier.classify(error, attempt: 2).disposition else {
                Issue.record("\(error) should retry")
                continue
            }
            #expect(after <= .seconds(5))
            if error.retryAfter != nil { #expect(after == .seconds(5)) }
        }
    }

    @Test("rate limits and quota pauses requeue without spending an attempt")
    func requeue() {
        #expect(
            classifier.classify(BackendError(.rateLimited, "429", retryAfter: 3), attempt: 1).disposition
                == .requeue(after: .seconds(3)))
        guard case .requeue = classifier.classify(BackendError(.quotaExhausted, "quota"), attempt: 1).disposition else {
            Issue.record("quota should requeue")
            return
        }
    }

    @Test("rate limits, 503s and quota answers carry the signal every worker obeys; other errors none")
    func signals() {
        func signal(_ error: BackendError) -> BackendSignal? { classifier.classify(error, attempt: 1).signal }
        #expect(
            signal(BackendError(.rateLimited, "429", retryAfter: 3, status: 429))
                == BackendSignal(.rateLimited, retryAfter: .seconds(3)))
        #expect(signal(BackendError(.rateLimited, "429", status: 429)) == BackendSignal(.rateLimited))
        #expect(signal(BackendError(.quotaExhausted, "quota", status: 429)) == BackendSignal(.quotaExhausted))
        #expect(
            signal(BackendError(.unavailable, "503", retryAfter: 2, status: 503))
                == BackendSignal(.unavailable, retryAfter: .seconds(2)))
        #expect(signal(BackendError(.unavailable, "500", status: 500)) == nil)
        #expect(signal(BackendError(.unavailable, "connection refused")) == nil)
        #expect(signal(BackendError(.timeout, "slow")) == nil)
        let moderated = classifier.classify(
            BackendError(.moderationBlocked, "no", status: 400, categories: ["violence"]), attempt: 1)
        #expect(moderated.signal == nil)
        #expect(moderated.categories == ["violence"])
        #expect(moderated.disposition == .terminal)
    }
}
