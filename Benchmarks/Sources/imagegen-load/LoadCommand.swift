import ArgumentParser
import Foundation

/// The load generator: starts (or uses) a Redis, starts real `imagegen worker` processes and the
/// fake backend where a scenario needs it, offers load through the Swift producer API, and
/// reports a table, a JSON object and a PNG chart per scenario.
@main
struct LoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "imagegen-load",
        abstract: "Load tests of imagegen with real worker processes.",
        discussion: """
            Scenarios: noop, latency, io, fair, ratelimit, crash, ingest (or all). Every run is bounded \
            in jobs and seconds. Reports go to OUT-DIR/load-SCENARIO.json and .png.
            """)

    @Argument(help: "Scenarios to run: noop, latency, io, fair, ratelimit, crash, ingest, or all.")
    var scenarios: [String]

    @Option(help: "Use this Redis instead of starting one (redis://host:port/db). Its queues are new ones.")
    var redisURL: String?

    @Option(help: "Port of the redis-server started here; 0 picks a free one. Default 0.")
    var redisPort: Int = 0

    @Option(help: "The imagegen release binary. Default ../.build/release/imagegen.")
    var imagegen: String = "../.build/release/imagegen"

    @Option(help: "Worker processes (default: the scenario's).")
    var workers: Int?

    @Option(help: "Slots per worker, comma-separated for io (default: the scenario's).")
    var slots: String?

    @Option(help: "Jobs (default: the scenario's; for fair, the bulk user's jobs).")
    var jobs: Int?

    @Option(help: "Most seconds the draining phase may take (default: the scenario's).")
    var maxSeconds: Double?

    @Option(help: "Simulated backend latency in ms for io, fair, crash; fake server latency for ratelimit.")
    var latencyMs: Int?

    @Option(help: "crash: seconds between SIGKILLs. Default 3.")
    var killEvery: Double = 3

    @Option(help: "io: simulated, or openai (the OpenAI backend over HTTP to the fake server). Default simulated.")
    var backend: String = "simulated"
    @Option(help: "ratelimit: the fake provider's own images per minute. Default: the budget, 600.")
    var providerLimit: Int?
    @Option(help: "io: size of the simulated outputs, WIDTHxHEIGHT. Default 8x8 (tiny).")
    var outputSize: String = "8x8"
    @Flag(help: "io with --backend openai: the fake server draws noise, so outputs do not compress (600x600 ≈ 1 MB).")
    var outputNoise = false

    @Option(
        help:
            "ingest: the folder of real test images (PngSuite, libjpeg-turbo's) mixed with the generated ones. Default: the repository's Tests/Corpus."
    )
    var corpus: String?

    @Option(help: "Directory of the reports, charts and process logs. Default load-results.")
    var outDir: String = "load-results"

    @Option(help: "Log level of the worker processes. Default warning.")
    var workerLogLevel: String = "warning"

    @Option(
        parsing: .unconditionalSingleValue,
        help:
            "An argument added to every worker's command line after the scenario's own, e.g. --worker-arg=--openai-answer-memory-mb=16 (repeatable)."
    )
    var workerArg: [String] = []

    func validate() throws {
        guard ["simulated", "openai"].contains(backend) else {
            throw ValidationError("--backend: simulated or openai, not '\(backend)'")
        }
        if let providerLimit, providerLimit <= 0 { throw ValidationError("--provider-limit must be positive") }
        for name in scenarios where name != "all" && Scenario(rawValue: name) == nil {
            throw ValidationError(
                "unknown scenario '\(name)': \(Scenario.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let sides = outputSize.split(separator: "x").compactMap { Int($0) }
        guard sides.count == 2, sides.allSatisfy({ (1...2048).contains($0) }) else {
            throw ValidationError("--output-size: WIDTHxHEIGHT, each side 1 to 2048")
        }
        if let slots,
            slots.split(separator: ",", omittingEmptySubsequences: false).contains(where: { (Int($0) ?? 0) < 1 })
        {
            throw ValidationError("--slots: positive numbers separated by commas")
        }
        if let workers, workers < 1 { throw ValidationError("--workers must be at least 1") }
        if let jobs, jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        if let maxSeconds, !(maxSeconds > 0) { throw ValidationError("--max-seconds must be positive") }
        if let latencyMs, latencyMs < 0 { throw ValidationError("--latency-ms cannot be negative") }
        guard killEvery > 0 else { throw ValidationError("--kill-every must be positive") }
        if let corpus, !FileManager.default.fileExists(atPath: corpus) {
            throw ValidationError("--corpus: no folder at \(corpus)")
        }
    }

    func run() async throws {
        let selected = scenarios.contains("all") ? Scenario.allCases : scenarios.compactMap(Scenario.init(rawValue:))
        let options = ScenarioOptions(
            workers: workers, slots: slots.map { $0.split(separator: ",").compactMap { Int($0) } }, jobs: jobs,
            maxSeconds: maxSeconds, latencyMS: latencyMs, killEverySeconds: killEvery, outputSize: outputSize,
            outputNoise: outputNoise, providerLimit: providerLimit, backend: backend, corpus: corpus)
        let harness = Harness(
            options: .init(
                redisURL: redisURL, redisPort: redisPort, imagegen: imagegen, runDirectory: "\(outDir)/logs",
                workerLogLevel: workerLogLevel, workerArguments: workerArg))
        var failure: Error?
        // Scenarios in which a worker ended by itself: their figures do not mean what they say.
        var troubled: [String] = []
        do {
            try await harness.start()
            for scenario in selected {
                var result = try await scenario.run(harness, options)
                result.figures.insert(("scenario", .string(scenario.rawValue)), at: 0)
                let crashed = harness.unexpectedExits.withLock { exits in
                    defer { exits = [] }
                    return exits
                }
                result.add(
                    "workers_ended_by_themselves", .array(crashed.map { .string($0) }),
                    row: "worker processes that ended by themselves", value: "\(crashed.count)", target: "0")
                if !crashed.isEmpty { troubled.append(scenario.rawValue) }
                result.figures.append(("machine", machine()))
                print(result.table())
                let json = JSON.object(result.figures).serialized() + "\n"
                let jsonPath = "\(outDir)/load-\(scenario.rawValue).json"
                try json.write(toFile: jsonPath, atomically: true, encoding: .utf8)
                let chartPath = "\(outDir)/load-\(scenario.rawValue).png"
                try Data(try Chart.png(for: result)).write(to: URL(fileURLWithPath: chartPath))
                print("report \(jsonPath), chart \(chartPath)")
            }
        } catch {
            failure = error
        }
        await harness.shutdown()
        if let failure { throw failure }
        if !troubled.isEmpty {
            FileHandle.standardError.write(
                Data(
                    "error: worker processes ended by themselves in \(troubled.joined(separator: ", ")); see \(outDir)/logs\n"
                        .utf8))
            throw ExitCode(1)
        }
    }

    /// The machine the figures come from.
    func machine() -> JSON {
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.split(separator: "\n")
            .first { $0.hasPrefix("model name") }.map {
                String($0.split(separator: ":").last ?? "").trimmingCharacters(in: .whitespaces)
            }
        let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first
        return .object([
            ("cpus", .int(ProcessInfo.processInfo.activeProcessorCount)), ("cpu", .string(cpu ?? "unknown")),
            ("load_average_1m", .string(load.map(String.init) ?? "unknown")),
            ("date", .string(ISO8601DateFormatter().string(from: Date()))),
        ])
    }
}
