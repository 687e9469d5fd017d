import ArgumentParser
import Foundation
import Logging
import RedisQueue
import Webhooks

/// The webhook dispatcher a worker runs beside its jobs. It starts when a signing secret is given.
struct WebhookOptions: ParsableArguments {
    @Option(
        help: """
            File holding the webhook signing secrets (whsec_..., several separated by spaces or lines \
            while rotating; the first signs first). Env: IMAGEGEN_WEBHOOK_SECRET. Without a secret no \
            webhooks are sent.
            """)
    var webhookSecretFile: String?
    @Option(
        help: """
            Webhook URL for jobs without a webhook_url, written to the queue ('' removes it). \
            Env: IMAGEGEN_WEBHOOK_DEFAULT_URL. Default: none.
            """)
    var webhookDefaultUrl: String?
    @Flag(
        help: """
            Allow webhook targets on loopback, private and link-local addresses (tests, closed \
            networks only). Env: IMAGEGEN_WEBHOOK_ALLOW_PRIVATE=1. Default: refused.
            """)
    var webhookAllowPrivateTargets = false
    @Option(help: "Webhook requests in flight at once. Env: IMAGEGEN_WEBHOOK_CONCURRENCY. Default 8.")
    var webhookConcurrency: Int?
    @Option(help: "Seconds one webhook request may take. Default 10.")
    var webhookTimeoutSeconds: Double = 10

    private var environment: [String: String] { ProcessInfo.processInfo.environment }

    func validate() throws {
        guard (concurrency ?? 1) >= 1 else { throw ValidationError("--webhook-concurrency must be at least 1") }
        guard webhookTimeoutSeconds > 0, webhookTimeoutSeconds <= 120 else {
            throw ValidationError("--webhook-timeout-seconds: more than 0, at most 120")
        }
        _ = try secrets()
        if let url = defaultURL, !url.isEmpty {
            do {
                _ = try WebhookTargetPolicy().target(of: url)
            } catch {
                throw ValidationError("--webhook-default-url: \(error.message)")
            }
        }
    }

    var concurrency: Int? {
        webhookConcurrency ?? environment["IMAGEGEN_WEBHOOK_CONCURRENCY"].flatMap { Int($0) }
    }

    var defaultURL: String? { webhookDefaultUrl ?? environment["IMAGEGEN_WEBHOOK_DEFAULT_URL"] }

    var allowPrivateTargets: Bool {
        webhookAllowPrivateTargets
            || ["1", "true", "yes"].contains(environment["IMAGEGEN_WEBHOOK_ALLOW_PRIVATE"] ?? "")
    }

    /// The signing secrets from the file, else the environment; nil when neither has any.
    func secrets() throws -> [WebhookSecret]? {
        let text: String
        if let file = webhookSecretFile {
            guard let contents = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ValidationError("cannot read the webhook secret file \(file)")
            }
            text = contents
        } else {
            text = environment["IMAGEGEN_WEBHOOK_SECRET"] ?? ""
        }
        guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return nil }
        do {
            return try WebhookSecret.parseList(text)
        } catch {
            throw ValidationError("webhook secret: \(error.message)")  // the message never holds the secret
        }
    }

    /// Writes the default URL when one was given, and makes the dispatcher when a secret was.
    func makeDispatcher(queue: RedisJobQueue, logger: Logger) async throws -> WebhookDispatcher? {
        if let url = defaultURL {
            try await queue.setWebhookDefaultURL(url)
            logger.info("webhook default URL written", metadata: ["webhooks.default_url_set": "\(!url.isEmpty)"])
        }
        guard let secrets = try secrets() else {
            logger.info("webhooks off: no signing secret (IMAGEGEN_WEBHOOK_SECRET or --webhook-secret-file)")
            return nil
        }
        var configuration = WebhookDispatcher.Configuration()
        configuration.concurrency = concurrency ?? 8
        configuration.requestTimeout = .milliseconds(Int64(webhookTimeoutSeconds * 1000))
        configuration.lease = configuration.requestTimeout * 2 + .seconds(5)
        configuration.policy = WebhookTargetPolicy(allowPrivateTargets: allowPrivateTargets)
        return WebhookDispatcher(
            configuration: configuration, queue: queue, signer: WebhookSigner(secrets: secrets), logger: logger)
    }
}
