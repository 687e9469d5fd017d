import Backends
import ImageIngest
import Testing

@Suite("Simulated backend")
struct SimulatedBackendTests {
    static let fast = SimulatedBackend(configuration: .init(latency: .zero))

    static func request(
        _ prompt: String, kind: ImageRequest.Kind = .generate, width: Int = 96, height: Int = 64, count: Int = 1,
        inputs: [IngestedImage] = [], mask: IngestedImage? = nil
    ) -> ImageRequest {
        ImageRequest(
            jobID: "job-1", kind: kind, prompt: prompt, model: "sim", width: width, height: height, count: count,
            inputs: inputs, mask: mask, userHash: "u")
    }

    @Test func defaults() {
        let configuration = SimulatedBackend.Configuration()
        #expect(configuration.latency == .milliseconds(300))
        #expect(configuration.latencyJitter == 0.2)
        #expect(configuration.failureRate == 0)
        #expect(configuration.seed == 0)
        #expect(Self.fast.name == "simulated")
    }

    @Test func samePromptGivesSameBytes() async throws {
        let first = try await Self.fast.generate(Self.request("a red fox in the snow"))
        let second = try await SimulatedBackend(configuration: .init(latency: .zero, seed: 99))
            .generate(Self.request("a red fox in the snow"))
        #expect(first.images.map(\.bytes) == second.images.map(\.bytes))
    }

    @Test func differentPromptsGiveDifferentPictures() async throws {
        let fox = try await Self.fast.generate(Self.request("a red fox in the snow")).images[0]
        let boat = try await Self.fast.generate(Self.request("a sailing boat at dusk")).images[0]
        #expect(fox.bytes != boat.bytes)
        let a = try PNGCodec.decode(fox.bytes)
        let b = try PNGCodec.decode(boat.bytes)
        // Visibly different: the mean absolute difference per channel is large.
        let total = zip(a.pixels, b.pixels).reduce(0) { $0 + abs(Int($1.0) - Int($1.1)) }
        #expect(Double(total) / Double(a.pixels.count) > 10)
    }

    @Test(arguments: [(96, 64), (1, 1), (300, 17), (3000, 2100)])
    func outputDecodesAtTheRequestedSize(width: Int, height: Int) async throws {
        let response = try await Self.fast.generate(Self.request("sizes", width: width, height: height, count: 2))
        #expect(response.images.count == 2)
        let expectedWidth = min(width, SimulatedBackend.maxSide)
        let expectedHeight = min(height, SimulatedBackend.maxSide)
        for image in response.images {
            #expect(image.format == "png")
            #expect(image.width == expectedWidth && image.height == expectedHeight)
            let decoded = try PNGCodec.decode(image.bytes)
            #expect(decoded.width == expectedWidth && decoded.height == expectedHeight)
        }
        if width > 1 {
            #expect(response.images[0].bytes != response.images[1].bytes)
        }
    }

    @Test func editReturnsAChangedImageOfTheInputSize() async throws {
        let ingestor = ImageIngestor()
        let source = try await Self.fast.generate(Self.request("source", width: 80, height: 50)).images[0]
        let input = try await ingestor.ingest(source.bytes, role: .image)
        let edited = try await Self.fast.generate(
            Self.request("make it pop", kind: .edit, width: 1024, height: 1024, inputs: [input])
        ).images[0]
        #expect(edited.width == 80 && edited.height == 50)
        let before = try PNGCodec.decode(input.bytes)
        let after = try PNGCodec.decode(edited.bytes)
        #expect(after.width == 80 && after.height == 50)
        #expect(after != before)
    }

    @Test func maskedEditInvertsOnlyTheTransparentArea() async throws {
        let ingestor = ImageIngestor()
        let source = try await Self.fast.generate(Self.request("source", width: 40, height: 30)).images[0]
        let input = try await ingestor.ingest(source.bytes, role: .image)
        var maskPixels = RGBAImage(width: 40, height: 30, red: 0, green: 0, blue: 0, alpha: 255)
        for y in 0..<30 {
            for x in 0..<20 { maskPixels.pixels[(y * 40 + x) * 4 + 3] = 0 }
        }
        let mask = try await ingestor.ingest(PNGCodec.encode(maskPixels), role: .mask)
        let edited = try await Self.fast.generate(
            Self.request("swap", kind: .edit, inputs: [input], mask: mask)
        ).images[0]
        let before = try PNGCodec.decode(input.bytes)
        let after = try PNGCodec.decode(edited.bytes)
        for y in 0..<30 {
            for x in [0, 19, 20, 39] {
                let index = (y * 40 + x) * 4
                let expected = x < 20 ? 255 - before.pixels[index] : before.pixels[index]
                #expect(after.pixels[index] == expected)
            }
        }
    }

    @Test func mismatchedMaskIsAnInvalidRequest() async throws {
        let ingestor = ImageIngestor()
        let input = try await ingestor.ingest(
            PNGCodec.encode(RGBAImage(width: 10, height: 10, red: 9)), role: .image)
        let mask = try await ingestor.ingest(PNGCodec.encode(RGBAImage(width: 5, height: 10, alpha: 0)), role: .mask)
        let error = await #expect(throws: BackendError.self) {
            try await Self.fast.generate(Self.request("x", kind: .edit, inputs: [input], mask: mask))
        }
        #expect(error?.code == .invalidRequest)
    }

    @Test("small pictures, drawn by the timer at the deadline, are the same as drawn on the pool")
    func smallPicturesDrawnAtTheDeadline() async throws {
        let timed = SimulatedBackend(configuration: .init(latency: .milliseconds(1), latencyJitter: 0))
        for (width, height, count) in [(8, 8, 2), (64, 64, 1), (65, 64, 1)] {
            let request = Self.request("a red fox in the snow", width: width, height: height, count: count)
            let atDeadline = try await timed.generate(request)
            let onPool = try await Self.fast.generate(request)
            #expect(atDeadline.images.count == count)
            #expect(atDeadline.images.map(\.bytes) == onPool.images.map(\.bytes))
        }
    }

    @Test(arguments: [(96, 64), (8, 8)])
    func cancellationDuringLatencyThrowsPromptly(width: Int, height: Int) async throws {
        let slow = SimulatedBackend(configuration: .init(latency: .seconds(30)))
        let clock = ContinuousClock()
        let start = clock.now
        let task = Task { try await slow.generate(Self.request("slow", width: width, height: height)) }
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        let error = await #expect(throws: BackendError.self) { try await task.value }
        #expect(error?.code == .canceled)
        // Canceled, not run out: the latency alone is 30 s (loose bound for a busy machine).
        #expect(clock.now - start < .seconds(25))
    }

    @Test func failureRateOneAlwaysFailsRetryably() async {
        let failing = SimulatedBackend(configuration: .init(latency: .zero, failureRate: 1))
        let error = await #expect(throws: BackendError.self) { try await failing.generate(Self.request("x")) }
        #expect(error?.code == .unavailable)
        #expect(error?.isRetryable == true)
    }

    @Test func failureMixIsConfigurable() async {
        var configuration = SimulatedBackend.Configuration(latency: .zero)
        configuration.rateLimitRate = 1
        let limited = await #expect(throws: BackendError.self) {
            try await SimulatedBackend(configuration: configuration).generate(Self.request("x"))
        }
        #expect(limited?.code == .rateLimited)
        #expect(limited?.retryAfter == 1)
        configuration.rateLimitRate = 0
        configuration.moderationRate = 1
        let refused = await #expect(throws: BackendError.self) {
            try await SimulatedBackend(configuration: configuration).generate(Self.request("x"))
        }
        #expect(refused?.code == .moderationBlocked)
        #expect(refused?.isRetryable == false)
        // A mix: over many calls each outcome shows up near its share.
        configuration = SimulatedBackend.Configuration(latency: .zero, failureRate: 0.2, seed: 7)
        configuration.moderationRate = 0.1
        let backend = SimulatedBackend(configuration: configuration)
        var outcomes: [String: Int] = [:]
        for _ in 0..<400 {
            do {
                _ = try await backend.generate(Self.request("mix", width: 4, height: 4))
                outcomes["ok", default: 0] += 1
            } catch let error as BackendError {
                outcomes[error.code.rawValue, default: 0] += 1
            } catch {}
        }
        #expect((50...110).contains(outcomes["unavailable"] ?? 0))
        #expect((20...65).contains(outcomes["moderation_blocked"] ?? 0))
        #expect((220...330).contains(outcomes["ok"] ?? 0))
    }

    @Test func latencyIsWaited() async throws {
        let backend = SimulatedBackend(configuration: .init(latency: .milliseconds(200), latencyJitter: 0))
        let clock = ContinuousClock()
        let start = clock.now
        _ = try await backend.generate(Self.request("wait", width: 8, height: 8))
        #expect(clock.now - start >= .milliseconds(190))
    }

    @Test func invalidRequestsAreRefused() async {
        for request in [Self.request("x", count: 0), Self.request("x", width: 0), Self.request("x", kind: .edit)] {
            let error = await #expect(throws: BackendError.self) { try await Self.fast.generate(request) }
            #expect(error?.code == .invalidRequest)
        }
    }
}
