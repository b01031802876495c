// Thin owners of libhdf5 handles (hid_t), just enough to read a Keras H5 file: groups, string
// attributes and float datasets. Every open handle lives in one final class whose deinit closes it;
// temporaries (types, dataspaces) are closed with `defer`. Nothing here is public: users of
// KerasImport see `KerasModel` and `KerasImportError`, never hid_t.
//
// HDF5 C API reference: https://docs.hdfgroup.org/hdf5/v1_10/ (H5F, H5G, H5D, H5A, H5T, H5S, H5E).
import CHDF5
import Foundation

/// An HDF5 call failed: the operation we attempted and HDF5's own explanation from its error stack.
struct HDF5Error: Error, CustomStringConvertible {
    var operation: String
    var detail: String?
    var description: String { detail.map { "could not \(operation) (\($0))" } ?? "could not \(operation)" }
}

/// The one check function for libhdf5: a negative return (hid_t, herr_t or htri_t) throws an
/// `HDF5Error` naming `operation`; anything else is returned unchanged.
@discardableResult
func h5<T: BinaryInteger>(_ result: T, _ operation: @autoclosure () -> String) throws -> T {
    if result < 0 { throw HDF5Error(operation: operation(), detail: HDF5Library.errorStackSummary()) }
    return result
}

enum HDF5Library {
    /// The linked libhdf5's version, e.g. "1.10.8" (`H5get_libversion`).
    static var version: String {
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        _ = H5get_libversion(&major, &minor, &release)
        return "\(major).\(minor).\(release)"
    }

    /// Stops libhdf5 from printing error stacks on stderr. HDF5's thread-safe build keeps this setting
    /// per thread, so every entry point calls it (`H5Eset_auto2(H5E_DEFAULT, NULL, NULL)`).
    static func silenceErrorPrinting() { _ = fp_h5_silence_errors() }

    /// The calling thread's HDF5 error stack as "outermost: innermost" (`H5Ewalk2`), then cleared.
    static func errorStackSummary() -> String? {
        var messages: [String] = []
        withUnsafeMutablePointer(to: &messages) { pointer in
            _ = H5Ewalk2(fp_h5e_default(), H5E_WALK_DOWNWARD, { _, error, context in
                if let desc = error?.pointee.desc, let context {
                    let text = String(cString: desc).trimmingCharacters(in: .whitespaces)
                    if !text.isEmpty { context.assumingMemoryBound(to: [String].self).pointee.append(text) }
                }
                return 0
            }, pointer)
        }
        _ = H5Eclear2(fp_h5e_default())
        guard let first = messages.first else { return nil }
        guard let last = messages.last, messages.count > 1, last != first else { return first }
        return "\(first): \(last)"
    }
}

/// Something that holds links to groups, datasets and attributes: a file or a group.
protocol HDF5Container: AnyObject {
    var id: hid_t { get }
    /// The object's path in the file, for messages ("/" for the file).
    var path: String { get }
}

extension HDF5Container {
    private func childPath(_ name: String) -> String { path == "/" ? "/" + name : path + "/" + name }

    /// Opens the group `name` (relative to this container; may contain "/"). `H5Gopen2`.
    func group(_ name: String) throws -> HDF5Group {
        let gid = try h5(H5Gopen2(id, name, fp_h5p_default()), "open group '\(childPath(name))'")
        return HDF5Group(id: gid, path: childPath(name))
    }

    /// Opens the dataset `name` (relative; may contain "/"). `H5Dopen2`.
    func dataset(_ name: String) throws -> HDF5Dataset {
        let did = try h5(H5Dopen2(id, name, fp_h5p_default()), "open dataset '\(childPath(name))'")
        return HDF5Dataset(id: did, path: childPath(name))
    }

    /// True when this object has an attribute `name`. `H5Aexists`.
    func hasAttribute(_ name: String) throws -> Bool {
        try h5(H5Aexists(id, name), "look up attribute '\(name)' of '\(path)'") > 0
    }

    /// Opens the attribute `name` of this object. `H5Aopen`.
    func attribute(_ name: String) throws -> HDF5Attribute {
        let aid = try h5(H5Aopen(id, name, fp_h5p_default()), "open attribute '\(name)' of '\(path)'")
        return HDF5Attribute(id: aid, name: "\(path)@\(name)")
    }

    /// True when a link `name` exists directly in this container. `H5Lexists`.
    func hasLink(_ name: String) throws -> Bool {
        try h5(H5Lexists(id, name, fp_h5p_default()), "look up '\(childPath(name))'") > 0
    }

    /// Names of the links directly in this group, in name order. `H5Gget_info`, `H5Lget_name_by_idx`.
    func childNames() throws -> [String] {
        var info = H5G_info_t()
        try h5(H5Gget_info(id, &info), "list group '\(path)'")
        var names: [String] = []
        for index in 0..<info.nlinks {
            let length = try h5(H5Lget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, index, nil, 0,
                                                   fp_h5p_default()), "read a link name in '\(path)'")
            var buffer = [CChar](repeating: 0, count: Int(length) + 1)
            try h5(H5Lget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, index, &buffer, buffer.count,
                                      fp_h5p_default()), "read a link name in '\(path)'")
            names.append(String(cString: buffer))
        }
        return names
    }
}

/// An open HDF5 file (read-only). `H5Fopen` / `H5Fclose`.
final class HDF5File: HDF5Container {
    let id: hid_t
    let path = "/"
    /// The file system path, for messages.
    let filePath: String

    /// Opens `filePath` read-only.
    init(readOnly filePath: String) throws {
        HDF5Library.silenceErrorPrinting()
        self.filePath = filePath
        id = try h5(H5Fopen(filePath, fp_h5f_acc_rdonly(), fp_h5p_default()), "open HDF5 file")
    }

    deinit { H5Fclose(id) }
}

/// An open group. `H5Gclose` on deinit.
final class HDF5Group: HDF5Container {
    let id: hid_t
    let path: String
    init(id: hid_t, path: String) { self.id = id; self.path = path }
    deinit { H5Gclose(id) }
}

/// An open dataset. `H5Dclose` on deinit.
final class HDF5Dataset {
    let id: hid_t
    let path: String
    init(id: hid_t, path: String) { self.id = id; self.path = path }
    deinit { H5Dclose(id) }

    /// The dataset's dimensions (`H5Dget_space`, `H5Sget_simple_extent_dims`); [] for a scalar.
    func shape() throws -> [Int] {
        let space = try h5(H5Dget_space(id), "get the dataspace of '\(path)'")
        defer { H5Sclose(space) }
        let rank = try h5(H5Sget_simple_extent_ndims(space), "get the rank of '\(path)'")
        var dims = [hsize_t](repeating: 0, count: Int(rank))
        try h5(H5Sget_simple_extent_dims(space, &dims, nil), "get the dimensions of '\(path)'")
        return dims.map { Int($0) }
    }

    /// Reads a floating-point dataset of any width as Float32 (HDF5 converts; `H5Dread` with
    /// `H5T_NATIVE_FLOAT`). Integer or string datasets are refused.
    func readFloats() throws -> [Float] {
        let type = try h5(H5Dget_type(id), "get the type of '\(path)'")
        defer { H5Tclose(type) }
        guard H5Tget_class(type) == H5T_FLOAT else {
            throw HDF5Error(operation: "read '\(path)' as floats", detail: "its element type is not floating point")
        }
        let count = try shape().reduce(1, *)
        var values = [Float](repeating: 0, count: count)
        if count > 0 {
            _ = try values.withUnsafeMutableBytes { buffer in
                try h5(H5Dread(id, fp_h5t_native_float(), fp_h5s_all(), fp_h5s_all(), fp_h5p_default(),
                               buffer.baseAddress), "read dataset '\(path)'")
            }
        }
        return values
    }
}

/// An open attribute. `H5Aclose` on deinit.
final class HDF5Attribute {
    let id: hid_t
    let name: String
    init(id: hid_t, name: String) { self.id = id; self.name = name }
    deinit { H5Aclose(id) }

    /// Reads a string attribute (scalar or 1-D; variable- or fixed-length, as h5py writes either)
    /// as an array of strings. `H5Aread`, `H5Dvlen_reclaim` for variable-length strings.
    func readStrings() throws -> [String] {
        let type = try h5(H5Aget_type(id), "get the type of attribute '\(name)'")
        defer { H5Tclose(type) }
        let space = try h5(H5Aget_space(id), "get the dataspace of attribute '\(name)'")
        defer { H5Sclose(space) }
        let count = Int(try h5(H5Sget_simple_extent_npoints(space), "count the elements of attribute '\(name)'"))
        // An empty list has no string type to speak of: Keras writes `np.array([])` (float64) for a
        // layer without weights.
        if count == 0 { return [] }
        guard H5Tget_class(type) == H5T_STRING else {
            throw HDF5Error(operation: "read attribute '\(name)' as text", detail: "it is not a string")
        }

        if try h5(H5Tis_variable_str(type), "inspect the type of attribute '\(name)'") > 0 {
            let memType = try h5(H5Tcopy(fp_h5t_c_s1()), "make a string type")
            defer { H5Tclose(memType) }
            try h5(H5Tset_size(memType, fp_h5t_variable()), "make a string type")
            try h5(H5Tset_cset(memType, H5Tget_cset(type)), "make a string type")
            var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
            try h5(H5Aread(id, memType, &pointers), "read attribute '\(name)'")
            defer { H5Dvlen_reclaim(memType, space, fp_h5p_default(), &pointers) }
            return pointers.map { $0.map { String(cString: $0) } ?? "" }
        }

        let size = H5Tget_size(type)
        guard size > 0 else { throw HDF5Error(operation: "read attribute '\(name)'", detail: "zero-size string type") }
        let spacePadded = H5Tget_strpad(type) == H5T_STR_SPACEPAD
        var bytes = [UInt8](repeating: 0, count: count * size)
        try h5(H5Aread(id, type, &bytes), "read attribute '\(name)'")
        return (0..<count).map { index in
            var slice = bytes[(index * size)..<((index + 1) * size)]
            if let nul = slice.firstIndex(of: 0) { slice = slice[slice.startIndex..<nul] }
            if spacePadded { while slice.last == 0x20 { slice = slice.dropLast() } }
            return String(decoding: slice, as: UTF8.self)
        }
    }

    /// Reads a scalar string attribute.
    func readString() throws -> String {
        let strings = try readStrings()
        guard strings.count == 1 else {
            throw HDF5Error(operation: "read attribute '\(name)'", detail: "expected one string, found \(strings.count)")
        }
        return strings[0]
    }
}
