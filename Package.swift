// swift-tools-version:6.0
import PackageDescription

// Module graph (DESIGN.md §2): tincture → TinctureAgent → TinctureBPF → TinctureCore;
// TinctureBPF is the only agent module that imports the C targets.
let package = Package(
    name: "tincture",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "tincture", targets: ["tincture"]),
        .executable(name: "tincture-bench-consumer", targets: ["tincture-bench-consumer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibbpf",
            pkgConfig: "libbpf",
            providers: [.apt(["libbpf-dev", "libelf-dev", "zlib1g-dev"])]
        ),
        // The compiled BPF object (generated skeleton, see Makefile) and the event ABI header.
        .target(
            name: "CTinctureBPF",
            dependencies: ["CLibbpf"],
            exclude: ["generated"]
        ),
        .target(name: "TinctureCore"),
        .target(
            name: "TinctureBPF",
            dependencies: ["TinctureCore", "CTinctureBPF", "CLibbpf"]
        ),
        .target(
            name: "TinctureAgent",
            dependencies: ["TinctureCore", "TinctureBPF"]
        ),
        .executableTarget(
            name: "tincture",
            dependencies: [
                "TinctureAgent", "TinctureBPF", "TinctureCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Consumer-throughput benchmark (Tests/bench/consumer/run.sh): the agent's
        // per-event path on a real ring buffer, against a minimal C consumer.
        .executableTarget(name: "tincture-bench-consumer", dependencies: ["TinctureCore", "CTinctureBPF", "CLibbpf"]),
        .testTarget(name: "TinctureCoreTests", dependencies: ["TinctureCore"]),
        .testTarget(name: "TinctureBPFTests", dependencies: ["TinctureBPF", "TinctureCore", "CTinctureBPF"]),
    ],
    swiftLanguageModes: [.v5]
)
