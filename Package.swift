// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "imagegen",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "imagegen", targets: ["imagegen"]),
        // The library a Swift web tier links to enqueue jobs, read status and follow events.
        .library(name: "ImagegenClient", targets: ["RedisQueue", "Storage"]),
        .library(name: "ImagegenWorker", targets: ["Worker"]),
        // The image pipeline (codecs, resampler, ingestor), for the benchmarks and tools.
        .library(name: "ImagegenIngest", targets: ["ImageIngest"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
    ],
    targets: [
        // C libraries from the system, each imported by exactly one Swift or C module.
        .systemLibrary(
            name: "CHiredis", pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(
            name: "CLibPNG", pkgConfig: "libpng",
            providers: [.apt(["libpng-dev"])]),
        .systemLibrary(
            name: "CLibJPEG", pkgConfig: "libjpeg",
            providers: [.apt(["libjpeg-dev"])]),
        .systemLibrary(
            name: "CLCMS2", pkgConfig: "lcms2",
            providers: [.apt(["liblcms2-dev"])]),
        // The image codecs' C: every setjmp and every codec hook lives here.
        .target(
            name: "CImageShim", dependencies: ["CLibPNG", "CLibJPEG"],
            // zlib directly: the PNG encoder deflates rows itself.
            linkerSettings: [.linkedLibrary("z"), .linkedLibrary("pthread")]),

        // The task loop's waits: ppoll(2) and its wake-up descriptor.
        .target(name: "CPoll"),

        // Threads and timers outside the cooperative pool: a condition lock, the task loop.
        .target(name: "ThreadSupport", dependencies: ["CPoll"]),

        .target(
            name: "RedisClient",
            dependencies: [
                "CHiredis", "ThreadSupport",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "JobQueue",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .target(
            name: "RedisQueue",
            dependencies: ["JobQueue", "RedisClient", "ThreadSupport"],
            resources: [.copy("Scripts")]),
        .target(name: "ImageIngest", dependencies: ["CImageShim", "CLCMS2", "ThreadSupport"]),
        .target(
            name: "Backends",
            dependencies: [
                "ImageIngest", "ThreadSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]),
        .target(
            name: "Storage",
            dependencies: [
                "RedisClient",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "Worker",
            dependencies: [
                "JobQueue", "ImageIngest", "Backends", "Storage", "ThreadSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        .target(
            name: "Webhooks",
            dependencies: [
                "JobQueue",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        .executableTarget(
            name: "imagegen",
            dependencies: [
                "Worker", "RedisQueue", "RedisClient", "Storage", "Backends", "ImageIngest", "JobQueue", "Webhooks",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),

        .testTarget(name: "JobQueueTests", dependencies: ["JobQueue"]),
        .testTarget(name: "ImageIngestTests", dependencies: ["ImageIngest", "Backends", "ThreadSupport"]),
        .testTarget(name: "WebhooksTests", dependencies: ["Webhooks", "JobQueue"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "RedisClient", "RedisQueue", "Storage", "Worker", "Backends", "JobQueue", "ImageIngest", "Webhooks",
                "ThreadSupport", .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
    ],
    swiftLanguageModes: [.v6]
)
