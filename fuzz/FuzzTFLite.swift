// libFuzzer entry point over framepipe's TFLite import: the bytes are decoded as a .tflite file
// (TFLiteFile's bounds-checked flatbuffer reader), converted to the graph IR, and the IR is
// verified and optimised as `Model(graph:)` does before compiling. A hostile file must end in a
// thrown error, never a trap, an out-of-bounds read or an unbounded allocation.
// Built by fuzz/run (swiftc -sanitize=fuzzer,address) with Sources/TFLiteImport and the IR files of
// Sources/Inference (Graph*, InferenceError) in one module; oneDNN is not involved.

/// Imports one fuzz input; never throws out.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTFLiteOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = size > 0 && data != nil ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    guard var graph = try? TFLiteImporter.importGraph(bytes: bytes, source: "fuzz-input") else { return 0 }
    guard (try? graph.verify(source: "fuzz-input")) != nil else { return 0 }
    graph.removeIdentities()
    graph.foldBatchNorms()
    graph.removeTrailingSoftmax()
    _ = try? graph.verify(source: "fuzz-input")
    return 0
}
