/// A generation job as the web tier submits it: version 1 of the job JSON.
///
/// The JSON Schema is `docs/job.schema.json`; the Redis function `imagegen_v1_enqueue` checks the
/// same rules, so producers in any language get the same errors.
public struct JobSpec: Codable, Sendable, Equatable {
    /// What the model is asked to do.
    public enum Kind: String, Codable, Sendable {
        case generate
        case edit
    }

    /// Priority tiers, served by weighted round robin.
    public enum Tier: String, Codable, Sendable, CaseIterable {
        case pro
        case standard
        case free
    }

    /// Always 1 for this format.
    public var version: Int = 1
    /// The web tier's user id: 1–128 characters of letters, digits and `. _ @ : -`.
    public var user: String
    public var tier: Tier
    public var kind: Kind
    /// The user's prompt. Never logged.
    public var prompt: String
    /// Model name passed to the backend. Default: the backend's default.
    public var model: String?
    /// `WIDTHxHEIGHT` or `auto`. Default `1024x1024`.
    public var size: String?
    /// Images to produce, 1–10. Default 1.
    public var n: Int?
    /// `auto`, `low`, `medium`, `high`. Default `auto`.
    public var quality: String?
    /// `png` or `jpeg`. Default `png`.
    public var outputFormat: String?
    /// Upload ids (from the blob store) of the input images; edits need at least one.
    public var inputs: [String]?
    /// Upload id of the mask (edits only).
    public var mask: String?
    /// A URL to notify when the job ends.
    public var webhookURL: String?
    /// Free-form string pairs the web tier gets back in events. Not content: keep prompts out.
    public var metadata: [String: String]?

    enum CodingKeys: String, CodingKey {
        case version, user, tier, kind, prompt, model, size, n, quality
        case outputFormat = "output_format"
        case inputs, mask
        case webhookURL = "webhook_url"
        case metadata
    }

    public init(
        user: String, tier: Tier = .standard, kind: Kind = .generate, prompt: String, model: String? = nil,
        size: String? = nil, n: Int? = nil, quality: String? = nil, outputFormat: String? = nil,
        inputs: [String]? = nil, mask: String? = nil, webhookURL: String? = nil, metadata: [String: String]? = nil
    ) {
        self.user = user
        self.tier = tier
        self.kind = kind
        self.prompt = prompt
        self.model = model
        self.size = size
        self.n = n
        self.quality = quality
        self.outputFormat = outputFormat
        self.inputs = inputs
        self.mask = mask
        self.webhookURL = webhookURL
        self.metadata = metadata
    }

    /// Width and height from ``size``; `auto` and absent mean 1024×1024.
    public var dimensions: (width: Int, height: Int) {
        guard let size, size != "auto" else { return (1024, 1024) }
        let parts = size.split(separator: "x")
        guard parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]) else { return (1024, 1024) }
        return (w, h)
    }

    /// Checks the rules the enqueue function checks, so Swift callers fail before a round trip.
    /// Letters, digits and `. _ @ : -`: the bytes a user id may hold.
    private static func isUserByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "@"),
            UInt8(ascii: ":"), UInt8(ascii: "-"):
            true
        default: false
        }
    }

    public func validate() throws(QueueError) {
        func invalid(_ message: String) -> QueueError { QueueError(.invalidJob, message) }
        guard version == 1 else { throw invalid("version: must be 1") }
        guard (1...128).contains(user.utf8.count), user.utf8.allSatisfy(Self.isUserByte) else {
            throw invalid("user: 1-128 characters of letters, digits and . _ @ : -")
        }
        guard (1...32000).contains(prompt.utf8.count) else { throw invalid("prompt: 1 to 32000 bytes of text") }
        if let n, !(1...10).contains(n) { throw invalid("n: a whole number from 1 to 10") }
        if let size, size != "auto" {
            let parts = size.split(separator: "x")
            guard parts.count == 2, parts.allSatisfy({ Int($0) != nil }) else {
                throw invalid("size: WIDTHxHEIGHT or auto")
            }
        }
        if kind == .edit && (inputs ?? []).isEmpty { throw invalid("inputs: an edit needs at least one image") }
        if (inputs ?? []).count > 16 { throw invalid("inputs: at most 16 images") }
    }
}
