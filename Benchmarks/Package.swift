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
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "imagegen-queue-bench",
            dependencies: [.product(name: "ImagegenClient", package: rootIdentity)]
        ),
    ],
    swiftLanguageModes: [.v6]
)
