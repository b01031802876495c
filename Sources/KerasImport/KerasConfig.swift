// The `model_config` attribute of a Keras H5 file: JSON describing the model's layers and how they
// are connected. Parsed into `KerasModelConfig` / `KerasLayerConfig` without interpreting layer
// options (that is the importer's job).
//
// Formats followed (Keras serialization, https://keras.io/guides/serialization_and_saving/):
//   Keras 3 functional: {"class_name": "Functional", "config": {"name", "layers": [{"class_name",
//     "name", "config", "inbound_nodes": [{"args": [<keras tensor or list>], "kwargs": {}}]}],
//     "input_layers": [name, node, tensor] or a list of them, "output_layers": same}};
//     a keras tensor is {"class_name": "__keras_tensor__", "config": {"keras_history": [layer, node, tensor]}}.
//   Keras 2 functional: "inbound_nodes": [[[layer, node, tensor, {kwargs}], ...], ...].
//   Sequential (both): {"class_name": "Sequential", "config": {"name", "layers": [...]}}, no wiring.
import Foundation

/// A parsed JSON value (the config is free-form; layers read the keys they understand).
enum JSONValue: Equatable, Decodable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }
    var string: String? { if case .string(let value) = self { return value }; return nil }
    var double: Double? { if case .number(let value) = self { return value }; return nil }
    var int: Int? { double.flatMap { $0 == $0.rounded() ? Int(exactly: $0) : nil } }
    var bool: Bool? { if case .bool(let value) = self { return value }; return nil }
    var array: [JSONValue]? { if case .array(let value) = self { return value }; return nil }
    var isNull: Bool { self == .null }
}

/// A reference to a tensor produced by a layer: the layer's name, which call of the layer (node)
/// and which of its outputs.
struct KerasTensorRef: Hashable, CustomStringConvertible {
    var layer: String
    var node: Int
    var tensor: Int
    var description: String { "\(layer)[\(node)][\(tensor)]" }
}

/// One layer of a functional or sequential model.
struct KerasLayerConfig {
    /// The Keras class, e.g. "Conv2D", "Functional".
    var className: String
    /// The layer's name, unique within its model.
    var name: String
    /// The layer's own options (`config`).
    var config: JSONValue
    /// One entry per call of the layer: the tensors it was called on, in argument order.
    var inboundNodes: [[KerasTensorRef]]
}

/// A model (`Functional` or `Sequential`) as described by `model_config`.
struct KerasModelConfig {
    var className: String
    var name: String
    var layers: [KerasLayerConfig]
    /// Functional models: the model's input and output tensors. Sequential: empty (wiring is implicit).
    var inputs: [KerasTensorRef]
    var outputs: [KerasTensorRef]
    var isSequential: Bool { className == "Sequential" }

    /// Class names that describe a nested model rather than a layer.
    static let modelClassNames: Set<String> = ["Functional", "Model", "Sequential"]

    /// Parses the `model_config` JSON text.
    init(json: String) throws {
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: Data(json.utf8))
        } catch {
            throw ConfigError("model_config is not valid JSON")
        }
        try self.init(value)
    }

    /// Builds a model description from its `{"class_name", "config"}` JSON.
    init(_ value: JSONValue) throws {
        guard let className = value["class_name"]?.string, let config = value["config"] else {
            throw ConfigError("model_config has no class_name/config")
        }
        guard KerasModelConfig.modelClassNames.contains(className) else {
            throw ConfigError("model_config describes a \(className), not a Functional or Sequential model")
        }
        self.className = className
        let name = config["name"]?.string ?? className.lowercased()
        self.name = name
        // Keras 2 Sequential configs may be a bare list of layers.
        guard let layerValues = config["layers"]?.array ?? config.array else {
            throw ConfigError("model '\(name)' lists no layers")
        }
        layers = try layerValues.enumerated().map { index, layer in
            guard let layerClass = layer["class_name"]?.string else {
                throw ConfigError("layer \(index) of model '\(name)' has no class_name")
            }
            let layerConfig = layer["config"] ?? .object([:])
            guard let layerName = layer["name"]?.string ?? layerConfig["name"]?.string else {
                throw ConfigError("layer \(index) (\(layerClass)) of model '\(name)' has no name")
            }
            let nodes = try (layer["inbound_nodes"]?.array ?? []).map { node in
                try KerasModelConfig.tensorRefs(inNode: node, layer: layerName)
            }
            return KerasLayerConfig(className: layerClass, name: layerName, config: layerConfig, inboundNodes: nodes)
        }
        if className == "Sequential" {
            inputs = []
            outputs = []
        } else {
            inputs = try KerasModelConfig.endpointRefs(config["input_layers"], what: "input_layers", model: name)
            outputs = try KerasModelConfig.endpointRefs(config["output_layers"], what: "output_layers", model: name)
        }
    }

    /// `input_layers` / `output_layers`: `[name, node, tensor]` or a list of those.
    private static func endpointRefs(_ value: JSONValue?, what: String, model: String) throws -> [KerasTensorRef] {
        guard let list = value?.array, !list.isEmpty else { throw ConfigError("model '\(model)' has no \(what)") }
        if let ref = triple(list) { return [ref] }
        return try list.map { item in
            guard let items = item.array, let ref = triple(items) else {
                throw ConfigError("model '\(model)' has a malformed \(what) entry")
            }
            return ref
        }
    }

    private static func triple(_ items: [JSONValue]) -> KerasTensorRef? {
        guard items.count >= 3, let layer = items[0].string, let node = items[1].int, let tensor = items[2].int else {
            return nil
        }
        return KerasTensorRef(layer: layer, node: node, tensor: tensor)
    }

    /// The tensors one call of a layer consumed, in order (Keras 3 `args` or Keras 2 lists).
    private static func tensorRefs(inNode node: JSONValue, layer: String) throws -> [KerasTensorRef] {
        var refs: [KerasTensorRef] = []
        func collect(_ value: JSONValue) {
            switch value {
            case .object:
                if value["class_name"]?.string == "__keras_tensor__",
                   let history = value["config"]?["keras_history"]?.array, let ref = triple(history) {
                    refs.append(ref)
                }
            case .array(let items):
                if let ref = triple(items) { refs.append(ref) } else { items.forEach(collect) }
            default:
                break
            }
        }
        if let args = node["args"] {
            collect(args)  // Keras 3; tensors passed as kwargs are not used by the layers we map
        } else if node.array != nil {
            collect(node)  // Keras 2
        } else {
            throw ConfigError("layer '\(layer)' has a malformed inbound node")
        }
        return refs
    }
}

/// A problem with the model_config text itself (reported with the file path by the importer).
struct ConfigError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
