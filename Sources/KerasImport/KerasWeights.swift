// The weights of a Keras H5 file (legacy "h5" format written by `model.save("x.h5")`):
//   /model_weights                  attribute `layer_names`: top-level layers, in model order
//   /model_weights/<layer>          attribute `weight_names`: e.g. "dense/kernel" (Keras 3),
//                                   "dense/kernel:0" (Keras 2), "Conv1/kernel" for a layer of a
//                                   nested model saved under the nested model's group
//   /model_weights/<layer>/<weight_name>   the float dataset
// (Keras `legacy_h5_format.save_weights_to_hdf5_group` / `load_weights_from_hdf5_group`.)
// A file written by `save_weights` has the same layout at the root instead of /model_weights.
import Foundation
import Inference

/// Every weight of the file, indexed by top-level group, then layer name, then variable name
/// ("kernel", "bias", "gamma", "moving_mean", ...). Tracks which ones the importer used.
final class KerasWeights {
    private var tensors: [String: [String: [String: Tensor]]] = [:]
    private var used = Set<String>()

    /// Reads all weights listed by the `weight_names` attributes under `/model_weights` (or the root).
    init(file: HDF5File) throws {
        let root: HDF5Container = try file.hasLink("model_weights") ? file.group("model_weights") : file
        let groupNames: [String]
        if try root.hasAttribute("layer_names") {
            groupNames = try root.attribute("layer_names").readStrings()
        } else {
            groupNames = try root.childNames()
        }
        for groupName in groupNames {
            guard try root.hasLink(groupName) else { continue }
            let group = try root.group(groupName)
            guard try group.hasAttribute("weight_names") else { continue }
            for weightName in try group.attribute("weight_names").readStrings() {
                let dataset = try group.dataset(weightName)
                let tensor = Tensor(shape: try dataset.shape(), data: try dataset.readFloats())
                let (layer, variable) = KerasWeights.split(weightName, group: groupName)
                tensors[groupName, default: [:]][layer, default: [:]][variable] = tensor
            }
        }
    }

    /// "block_1_expand/kernel:0" → ("block_1_expand", "kernel"); a bare "kernel" belongs to the group.
    static func split(_ weightName: String, group: String) -> (layer: String, variable: String) {
        let parts = weightName.split(separator: "/").map(String.init)
        var variable = parts.last ?? weightName
        if let colon = variable.lastIndex(of: ":"), variable[variable.index(after: colon)...].allSatisfy(\.isNumber) {
            variable = String(variable[..<colon])
        }
        let layer = parts.count >= 2 ? parts[parts.count - 2] : group
        return (layer, variable)
    }

    /// The variables of `layer`, saved in top-level group `group` (the layer itself, or the
    /// outermost nested model that contains it). Empty when the layer has no weights.
    func variables(group: String, layer: String) -> [String: Tensor] {
        tensors[group]?[layer] ?? [:]
    }

    /// Marks one variable as consumed by the importer.
    func markUsed(group: String, layer: String, variable: String) {
        used.insert("\(group)/\(layer)/\(variable)")
    }

    /// Weights present in the file that no layer consumed ("group/layer/variable"), sorted.
    var unused: [String] {
        var names: [String] = []
        for (group, layers) in tensors {
            for (layer, variables) in layers {
                for variable in variables.keys where !used.contains("\(group)/\(layer)/\(variable)") {
                    names.append("\(group)/\(layer)/\(variable)")
                }
            }
        }
        return names.sorted()
    }

    /// Total number of stored weight values.
    var parameterCount: Int {
        tensors.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.count } } }
    }
}
