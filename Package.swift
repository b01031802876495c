// swift-tools-version:6.0
// framepipe: video frames -> MobileNetV2 embeddings and labels (FFmpeg + oneDNN).
import PackageDescription

let package = Package(
    name: "framepipe",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "framepipe", targets: ["framepipe"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // C at the edge: system libraries found through pkg-config / plain -l flags.
        .systemLibrary(
            name: "CFFmpeg",
            pkgConfig: "libavformat",
            providers: [.apt(["libavformat-dev", "libavcodec-dev", "libswscale-dev", "libavutil-dev"])]
        ),
        .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),

        // Generated swift-protobuf types for onnx.proto (see Sources/ONNXProto/README.md).
        .target(name: "ONNXProto", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
                exclude: ["README.md"]),

        .target(name: "Media", dependencies: ["CFFmpeg"]),
        .target(name: "Inference", dependencies: ["CDNNL", "ONNXProto"]),
        // Keras H5 importer (libhdf5) producing the same graph IR as the ONNX importer.
        .target(name: "KerasImport", dependencies: ["CHDF5", "Inference"]),
        // TFLite flatbuffer importer (its own bounds-checked reader) producing the same graph IR.
        .target(name: "TFLiteImport", dependencies: ["Inference"]),
        .target(name: "Output"),
        .target(name: "Pipeline", dependencies: ["Media", "Inference", "KerasImport", "TFLiteImport", "Output"]),
        // The PostgreSQL job queue: schema migration, claim/lease/complete, the results sink and its outbox.
        .target(
            name: "Queue",
            dependencies: [
                "Output",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The daemon: config, inbox watcher, live streams, sd_notify, metrics.
        .target(
            name: "Service",
            dependencies: [
                "Media", "Inference", "KerasImport", "Output", "Pipeline", "Queue",
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "framepipe",
            dependencies: [
                "Media", "Inference", "KerasImport", "Output", "Pipeline", "Service", "Queue",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Shared by the test targets: asset paths, the venv's python, running the built binary.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "MediaTests", dependencies: ["Media", "TestSupport"]),
        .testTarget(name: "InferenceTests", dependencies: ["Inference", "ONNXProto", .product(name: "SwiftProtobuf", package: "swift-protobuf"), "TestSupport"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "KerasImportTests", dependencies: ["KerasImport", "Inference", "TestSupport"]),
        .testTarget(name: "TFLiteImportTests", dependencies: ["TFLiteImport", "Inference", "Pipeline", "TestSupport"]),
        .testTarget(name: "PipelineTests", dependencies: ["Pipeline", "Output", "TestSupport"]),
        .testTarget(name: "ServiceTests", dependencies: ["Service", "TestSupport"]),
        // Against a throwaway PostgreSQL cluster the tests start themselves; worker processes are the built binary.
        .testTarget(name: "QueueTests", dependencies: ["Queue", "Output", "TestSupport", "framepipe"]),
        // Runs the built `framepipe` binary as a user would; depends on it so it is built first.
        .testTarget(name: "EndToEndTests", dependencies: ["framepipe", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
