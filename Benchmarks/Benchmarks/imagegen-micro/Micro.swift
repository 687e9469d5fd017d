import Benchmark
import BenchmarkSupport
import Foundation
import ImageIngest
import JobQueue
import RedisClient
import RedisQueue

// Micro-benchmarks of the pieces a job goes through: the Redis protocol as the client exposes it,
// the queue's enqueue / claim / complete functions against a local Redis, the image codecs, the
// resampler, and the whole ingest of the two reference images (drawn by the benchmark itself).
//
//     IMAGEGEN_BENCH_REDIS_URL=redis://127.0.0.1:6379/0 swift package benchmark --target imagegen-micro
//
// Without IMAGEGEN_BENCH_REDIS_URL the Redis benchmarks are skipped.

/// The 12-megapixel photo-like JPEG and the 4096 × 4096 RGBA PNG, drawn once.
let photoJPEG: [UInt8] = (try? ReferenceImages.photoJPEG()) ?? []
let artPNG: [UInt8] = (try? ReferenceImages.rgbaPNG()) ?? []
let redisURL = ProcessInfo.processInfo.environment["IMAGEGEN_BENCH_REDIS_URL"]

let benchmarks: @Sendable () -> Void = {
    let imageConfiguration = Benchmark.Configuration(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .peakMemoryResident], warmupIterations: 1,
        maxDuration: .seconds(10), maxIterations: 20)
    let redisConfiguration = Benchmark.Configuration(
        metrics: [.wallClock, .cpuTotal, .throughput, .mallocCountTotal], warmupIterations: 10,
        scalingFactor: .kilo, maxDuration: .seconds(5), maxIterations: 50, skip: redisURL == nil)
    let pureConfiguration = Benchmark.Configuration(
        metrics: [.wallClock, .cpuTotal, .throughput, .mallocCountTotal], scalingFactor: .kilo,
        maxDuration: .seconds(3))

    // MARK: RESP (as RedisClient exposes it: commands built from arguments, replies as RESPValue)

    Benchmark("RESP build an enqueue command", configuration: pureConfiguration) { benchmark in
        let json = Array(
            #"{"kind":"generate","prompt":"a lighthouse","size":"1024x1024","tier":"standard","user":"u1","version":1}"#
                .utf8)
        for _ in benchmark.scaledIterations {
            let command: RedisCommand = [
                "FCALL", "imagegen_v1_enqueue", "1", "imagegen:{default}", RedisArgument(bytes: json), "",
                RedisArgument(0),
            ]
            blackHole(command)
        }
    }

    Benchmark("RESP read a claim reply of 16 jobs", configuration: pureConfiguration) { benchmark in
        var items: [RESPValue] = [.integer(-1)]
        for index in 0..<16 {
            items += [
                .bulk(Array("\(index)".utf8)), .integer(Int64(index)), .integer(1), .integer(0),
                .bulk(Array(#"{"prompt":"p","user":"u1","version":1}"#.utf8)),
            ]
        }
        let reply = RESPValue.array(items)
        for _ in benchmark.scaledIterations {
            var total = 0
            for item in reply.array ?? [] { total += item.string?.utf8.count ?? 0 }
            blackHole(total)
        }
    }

    Benchmark("RESP round trip PING", configuration: redisConfiguration) { benchmark in
        guard let redisURL, let configuration = try? RedisConfiguration(url: redisURL) else { return }
        let connection = RedisConnection(configuration: configuration)
        defer { connection.close() }
        _ = try? await connection.send(["PING"])
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(try? await connection.send(["PING"])) }
        benchmark.stopMeasurement()
    }

    Benchmark("RESP pipeline of 100 GET (1 KB values)", configuration: redisConfiguration) { benchmark in
        guard let redisURL, let configuration = try? RedisConfiguration(url: redisURL) else { return }
        let connection = RedisConnection(configuration: configuration)
        defer { connection.close() }
        _ = try? await connection.send(["SET", "bench:kb", RedisArgument(bytes: [UInt8](repeating: 42, count: 1024))])
        let commands: [RedisCommand] = Array(repeating: ["GET", "bench:kb"], count: 100)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(try? await connection.pipeline(commands)) }
        benchmark.stopMeasurement()
    }

    // MARK: The queue's functions

    Benchmark("queue enqueue (awaited)", configuration: redisConfiguration) { benchmark in
        guard let made = await makeQueue() else { return }
        let (pool, queue) = made
        defer { pool.close() }
        benchmark.startMeasurement()
        for index in benchmark.scaledIterations {
            blackHole(try? await queue.enqueue(JobSpec(user: "u\(index % 50)", prompt: "p \(index)", size: "8x8")))
        }
        benchmark.stopMeasurement()
    }

    Benchmark("queue claim (one job per call)", configuration: redisConfiguration) { benchmark in
        guard let made = await makeQueue() else { return }
        let (pool, queue) = made
        defer { pool.close() }
        for index in benchmark.scaledIterations {
            _ = try? await queue.enqueue(JobSpec(user: "u\(index % 50)", prompt: "p \(index)", size: "8x8"))
        }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(try? await queue.claim(workerID: "bench", limit: 1)) }
        benchmark.stopMeasurement()
    }

    Benchmark("queue complete", configuration: redisConfiguration) { benchmark in
        guard let made = await makeQueue() else { return }
        let (pool, queue) = made
        defer { pool.close() }
        var leases: [Lease] = []
        for index in benchmark.scaledIterations {
            _ = try? await queue.enqueue(JobSpec(user: "u\(index % 50)", prompt: "p \(index)", size: "8x8"))
        }
        while leases.count < benchmark.scaledIterations.count {
            guard let claimed = try? await queue.claim(workerID: "bench", limit: 64), !claimed.jobs.isEmpty else {
                break
            }
            leases += claimed.jobs.map(\.lease)
        }
        let result = JobResult(
            outputs: [], usage: .init(images: 1, size: "8x8", model: "none"),
            durations: .init(ingestMS: 0, backendMS: 0, storeMS: 0))
        benchmark.startMeasurement()
        for lease in leases { blackHole(try? await queue.complete(lease, result: result)) }
        benchmark.stopMeasurement()
    }

    // MARK: Images

    Benchmark("JPEG decode 12 MP", configuration: imageConfiguration) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try JPEGCodec.decode(photoJPEG)) }
    }

    Benchmark("PNG decode 4096x4096 RGBA", configuration: imageConfiguration) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try PNGCodec.decode(artPNG)) }
    }

    Benchmark("resize 12 MP to fit 1536 (Lanczos-3)", configuration: imageConfiguration) { benchmark in
        let image = try JPEGCodec.decode(photoJPEG).image
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(try Resampler.resize(image, fitting: .maxSide(1536))) }
        benchmark.stopMeasurement()
    }

    Benchmark("PNG encode 1536x1152", configuration: imageConfiguration) { benchmark in
        let image = try Resampler.resize(try JPEGCodec.decode(photoJPEG).image, fitting: .maxSide(1536))
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(try PNGCodec.encode(image)) }
        benchmark.stopMeasurement()
    }

    Benchmark("JPEG encode 12 MP", configuration: imageConfiguration) { benchmark in
        let image = try JPEGCodec.decode(photoJPEG).image
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(try JPEGCodec.encode(image)) }
        benchmark.stopMeasurement()
    }

    Benchmark("ingest 12 MP JPEG (whole pipeline)", configuration: imageConfiguration) { benchmark in
        let ingestor = ImageIngestor()
        for _ in benchmark.scaledIterations { blackHole(try await ingestor.ingest(photoJPEG, role: .image)) }
    }

    Benchmark("ingest 4096x4096 RGBA PNG (whole pipeline)", configuration: imageConfiguration) { benchmark in
        let ingestor = ImageIngestor()
        for _ in benchmark.scaledIterations { blackHole(try await ingestor.ingest(artPNG, role: .image)) }
    }
}

/// A fresh queue without a per-user cap on the benchmark's Redis.
func makeQueue() async -> (RedisPool, RedisJobQueue)? {
    guard let redisURL, let configuration = try? RedisConfiguration(url: redisURL) else { return nil }
    let pool = RedisPool(configuration: configuration, size: 2)
    guard let queue = try? RedisJobQueue(pool: pool, name: "micro-\(UInt32.random(in: 0...UInt32.max))") else {
        return nil
    }
    var settings = QueueSettings()
    settings.userInFlightCap = 0
    _ = try? await queue.configure(settings)
    return (pool, queue)
}
