/// A Keras H5 file could not be imported: which file, which layer (when one is to blame) and why.
///
/// The description reads `<file>: layer '<name>' (<class>): <reason>` or `<file>: <reason>`.
public struct KerasImportError: Error, CustomStringConvertible, Sendable {
    /// The H5 file being imported.
    public var path: String
    /// The offending layer's name (nested layers as "outer/inner"), if any.
    public var layer: String?
    /// The offending layer's Keras class, e.g. "Conv3D", if any.
    public var layerClass: String?
    /// What went wrong.
    public var reason: String

    /// Creates an error.
    public init(path: String, layer: String? = nil, layerClass: String? = nil, reason: String) {
        self.path = path
        self.layer = layer
        self.layerClass = layerClass
        self.reason = reason
    }

    public var description: String {
        switch (layer, layerClass) {
        case let (layer?, layerClass?): return "\(path): layer '\(layer)' (\(layerClass)): \(reason)"
        case let (layer?, nil): return "\(path): layer '\(layer)': \(reason)"
        default: return "\(path): \(reason)"
        }
    }
}
