import ImageIngest
import ThreadSupport

/// A backend that draws pictures locally instead of calling a model, for development, demos and
/// tests of everything around the model call.
///
/// Each call waits for a configurable latency, may fail with a retryable
/// ``BackendError/Code/unavailable`` at a configurable rate, and then:
/// - for ``ImageRequest/Kind/generate``, draws `count` PNGs of the requested size (each side clamped
///   to 1...2048): a gradient with circles, rectangles and stripes whose colours and layout come from
///   a stable hash of the prompt, so the same prompt always gives the same bytes and different
///   prompts look visibly different; the image index moves the shapes a little;
/// - for ``ImageRequest/Kind/edit``, decodes the first input and, with a mask, inverts the colours
///   where the mask is transparent; without one, posterizes, tints and frames the picture. The
///   output has the input's size. A JPEG input is not decoded yet: a picture for the prompt at the
///   input's size is edited instead.
///
/// Output is always PNG. Drawing and encoding run on the backend's own ``BlockingThreadPool``.
public struct SimulatedBackend: ImageModelBackend {
    /// How the simulation behaves.
    public struct Configuration: Sendable {
        /// The mean time a call takes before it produces anything. Default 300 ms.
        public var latency: Duration
        /// The relative spread of the latency: each call waits `latency × (1 ± latencyJitter)`,
        /// uniformly. Default 0.2.
        public var latencyJitter: Double
        /// The fraction of calls (0...1) that fail with a retryable ``BackendError/Code/unavailable``
        /// after the latency. Default 0.
        public var failureRate: Double
        /// The fraction of calls (0...1) answered as a provider rate limit (``BackendError/Code/rateLimited``,
        /// retry after 1 s). Default 0.
        public var rateLimitRate: Double = 0
        /// The fraction of calls (0...1) refused by simulated moderation (terminal). Default 0.
        public var moderationRate: Double = 0
        /// Seeds the latency and failure draws, so a sequence of calls behaves the same on every run.
        /// Pictures depend only on the request. Default 0.
        public var seed: UInt64

        /// Creates a configuration; every argument defaults to the documented default.
        public init(
            latency: Duration = .milliseconds(300), latencyJitter: Double = 0.2, failureRate: Double = 0,
            seed: UInt64 = 0
        ) {
            self.latency = latency
            self.latencyJitter = latencyJitter
            self.failureRate = failureRate
            self.seed = seed
        }
    }

    /// The largest width or height drawn; larger requests are clamped.
    public static let maxSide = 2048
    /// The most images one request may ask for.
    public static let maxCount = 10
    /// Pictures of at most this many pixels in all are drawn by the timer's thread at the deadline.
    static let smallPixels = 64 * 64

    /// The configuration in use.
    public let configuration: Configuration
    private let random: SharedRandom
    private let pool: BlockingThreadPool

    /// `simulated`.
    public var name: String { "simulated" }

    /// Creates a simulated backend with its own two drawing threads.
    public init(configuration: Configuration = .init()) {
        self.configuration = configuration
        self.random = SharedRandom(seed: configuration.seed)
        self.pool = BlockingThreadPool(threads: 2)
    }

    /// Draws or edits as described on ``SimulatedBackend`` while the latency passes, then answers (or fails).
    ///
    /// - Throws: ``BackendError`` with ``BackendError/Code/invalidRequest`` for a size or count
    ///   out of range or an edit without a usable input, ``BackendError/Code/unavailable`` for a
    ///   simulated failure, and ``BackendError/Code/canceled`` as soon as the task is canceled.
    public func generate(_ request: ImageRequest) async throws -> ImageResponse {
        guard (1...Self.maxCount).contains(request.count) else {
            throw BackendError(.invalidRequest, "count must be between 1 and \(Self.maxCount)")
        }
        if request.kind == .generate {
            guard request.width > 0, request.height > 0 else {
                throw BackendError(.invalidRequest, "width and height must be positive")
            }
        } else if request.inputs.isEmpty {
            throw BackendError(.invalidRequest, "an edit needs an input image")
        }

        let draw = random.nextUnit()
        let fails = draw < configuration.failureRate
        let rateLimited = !fails && draw < configuration.failureRate + configuration.rateLimitRate
        let moderated =
            !fails && !rateLimited
            && draw < configuration.failureRate + configuration.rateLimitRate + configuration.moderationRate
        let delay = latency(unit: random.nextUnit())
        let draws = !(fails || rateLimited || moderated)
        // Small pictures are drawn by the timer when the latency has passed; larger ones on the
        // pool while it passes, as a remote model's would be.
        let drawsAtDeadline =
            draws && delay > .zero && request.width * request.height * request.count <= Self.smallPixels
        let drawing =
            draws && !drawsAtDeadline
            ? pool.start { try (0..<request.count).map { try Self.draw(request, index: $0) } } : nil
        var drawn: [GeneratedImage]?
        do {
            if drawsAtDeadline {
                drawn = try await TaskLoop.shared.sleep(for: delay) {
                    try (0..<request.count).map { try Self.draw(request, index: $0) }
                }
            } else if delay > .zero {
                try await TaskLoop.shared.sleep(for: delay)
            } else {
                try Task.checkCancellation()
            }
        } catch is CancellationError {
            throw BackendError(.canceled, "the request was canceled")
        }
        if rateLimited {
            throw BackendError(.rateLimited, "simulated rate limit", retryAfter: 1)
        }
        if moderated {
            throw BackendError(.moderationBlocked, "simulated moderation refusal")
        }
        if fails {
            throw BackendError(.unavailable, "simulated backend failure")
        }

        let images: [GeneratedImage]
        if let drawn {
            images = drawn
        } else if let drawing {
            images = try await drawing.value
        } else {
            throw BackendError(.unavailable, "simulated backend failure")
        }
        if Task.isCancelled {
            throw BackendError(.canceled, "the request was canceled")
        }
        return ImageResponse(
            images: images, inputTokens: max(1, request.prompt.utf8.count / 4),
            outputTokens: images.reduce(0) { $0 + $1.width * $1.height / 1024 })
    }

    /// `latency × (1 + jitter × (2u − 1))` for a uniform `u` in 0..<1.
    private func latency(unit: Double) -> Duration {
        let jitter = min(1, max(0, configuration.latencyJitter))
        let factor = 1 + jitter * (2 * unit - 1)
        let (seconds, attoseconds) = configuration.latency.components
        let nanoseconds = (Double(seconds) * 1e9 + Double(attoseconds) / 1e9) * factor
        return .nanoseconds(Int64(max(0, nanoseconds)))
    }

    /// Draws or edits one image; runs on the pool.
    private static func draw(_ request: ImageRequest, index: Int) throws -> GeneratedImage {
        let picture: RGBAImage
        switch request.kind {
        case .generate:
            let width = min(request.width, maxSide)
            let height = min(request.height, maxSide)
            picture = SimulatedPainter.paint(prompt: request.prompt, width: width, height: height, variant: index)
        case .edit:
            let input = try source(request.inputs[0], prompt: request.prompt)
            if let maskInput = request.mask {
                let mask = try decode(maskInput, what: "mask")
                guard mask.width == input.width, mask.height == input.height else {
                    throw BackendError(
                        .invalidRequest,
                        "the mask is \(mask.width)x\(mask.height) but the image is \(input.width)x\(input.height)")
                }
                picture = SimulatedPainter.invert(input, inside: mask, prompt: request.prompt, variant: index)
            } else {
                picture = SimulatedPainter.restyle(input, prompt: request.prompt, variant: index)
            }
        }
        let bytes: [UInt8]
        do {
            bytes = try PNGCodec.encode(picture, keepAlpha: !picture.isOpaque)
        } catch {
            throw BackendError(.invalidRequest, "the picture could not be encoded: \(error)")
        }
        return GeneratedImage(bytes: bytes, format: "png", width: picture.width, height: picture.height)
    }

    /// The pixels an edit starts from.
    private static func source(_ input: IngestedImage, prompt: String) throws -> RGBAImage {
        if input.format == "png" {
            return try decode(input, what: "input image")
        }
        // JPEG inputs pass through ingest undecoded for now: edit a stand-in of the same size.
        let (pixels, overflow) = input.width.multipliedReportingOverflow(by: input.height)
        guard input.width > 0, input.height > 0, !overflow, pixels <= IngestLimits().maxPixels else {
            throw BackendError(.invalidRequest, "the input image has an unusable size")
        }
        return SimulatedPainter.paint(prompt: prompt, width: input.width, height: input.height, variant: 0)
    }

    private static func decode(_ input: IngestedImage, what: String) throws -> RGBAImage {
        do {
            return try PNGCodec.decode(input.bytes)
        } catch {
            throw BackendError(.invalidRequest, "the \(what) could not be decoded: \(error)")
        }
    }
}
