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
        .target(name: "Output"),
        .target(name: "Pipeline", dependencies: ["Media", "Inference", "KerasImport", "Output"]),
        // The daemon: config, inbox watcher, live streams, sd_notify, metrics.
        .target(
            name: "Service",
            dependencies: [
                "Media", "Inference", "KerasImport", "Output", "Pipeline",
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "framepipe",
            dependencies: [
                "Media", "Inference", "KerasImport", "Output", "Pipeline", "Service",
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
        .testTarget(name: "PipelineTests", dependencies: ["Pipeline", "Output", "TestSupport"]),
        .testTarget(name: "ServiceTests", dependencies: ["Service", "TestSupport"]),
        // Runs the built `framepipe` binary as a user would; depends on it so it is built first.
        .testTarget(name: "EndToEndTests", dependencies: ["framepipe", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
