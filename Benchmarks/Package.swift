// swift-tools-version:6.1
import Foundation
import PackageDescription

// SwiftPM names a path dependency after its folder, whatever the clone is called.
let rootIdentity = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .lastPathComponent.lowercased()

// Load tests and micro-benchmarks of imagegen, kept apart from the main package so that its
// build and tests do not pay for them. Depends on the root package by path.
let package = Package(
    name: "imagegen-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        // package-benchmark; the malloc interposer gives the malloc counts (swift-tools-version 6.1 for traits).
        .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // Shared by the load generator and the micro-benchmarks: the reference images, statistics.
        .target(
            name: "BenchmarkSupport",
            dependencies: [.product(name: "ImagegenIngest", package: rootIdentity)]
        ),
        .executableTarget(
            name: "imagegen-load",
            dependencies: [
                "BenchmarkSupport",
                .product(name: "ImagegenClient", package: rootIdentity),
                .product(name: "ImagegenIngest", package: rootIdentity),
                // For the worker's documented defaults the figures depend on.
                .product(name: "ImagegenWorker", package: rootIdentity),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Micro-benchmarks, run with `swift package benchmark` (sources under Benchmarks/, as the plugin wants).
        .executableTarget(
            name: "imagegen-micro",
            dependencies: [
                "BenchmarkSupport",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "ImagegenClient", package: rootIdentity),
                .product(name: "ImagegenIngest", package: rootIdentity),
            ],
            path: "Benchmarks/imagegen-micro",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "imagegen-queue-bench",
            dependencies: [
                .product(name: "ImagegenClient", package: rootIdentity),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
