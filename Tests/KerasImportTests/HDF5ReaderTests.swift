import Foundation
import Testing
import TestSupport
@testable import KerasImport

/// CHDF5 links and the shim's macro wrappers return HDF5's predefined ids.
@Suite struct CHDF5LinkTests {
    @Test func libraryLinksAndReportsItsVersion() {
        #expect(HDF5Library.version.hasPrefix("1."))
    }
}

@Suite(.enabled(if: TestEnv.hasPython))
struct HDF5ReaderTests {
    let dir: URL
    init() throws { dir = try Fixtures.makeSyntheticModels() }
    var strings: String { dir.appendingPathComponent("strings.h5").path }

    @Test func readsVariableAndFixedLengthStringAttributes() throws {
        let file = try HDF5File(readOnly: strings)
        #expect(try file.attribute("vlen_scalar").readString() == "héllo")
        #expect(try file.attribute("vlen_list").readStrings() == ["a", "bb", "ccc"])
        #expect(try file.attribute("fixed_list").readStrings() == ["xy", "z"])
        #expect(try file.hasAttribute("vlen_list"))
        #expect(try !file.hasAttribute("absent"))
    }

    @Test func nonStringAttributeIsRefusedWithItsName() throws {
        let file = try HDF5File(readOnly: strings)
        let error = try #require(throws: HDF5Error.self) { try file.attribute("number").readStrings() }
        #expect(error.description.contains("number"))
    }

    @Test func readsFloatDatasetsOfAnyWidthAndRefusesIntegers() throws {
        let file = try HDF5File(readOnly: strings)
        let f64 = try file.dataset("outer/inner/f64")
        #expect(try f64.shape() == [2, 3])
        #expect(try f64.readFloats() == [0, 0.25, 0.5, 0.75, 1, 1.25])
        #expect(try file.group("outer").dataset("inner/f16").readFloats() == [1.5, -2.25])
        let error = try #require(throws: HDF5Error.self) { try file.dataset("outer/inner/i32").readFloats() }
        #expect(error.description.contains("/outer/inner/i32"))
    }

    @Test func listsChildrenInNameOrder() throws {
        let file = try HDF5File(readOnly: strings)
        #expect(try file.group("outer/inner").childNames() == ["f16", "f64", "i32"])
        #expect(try file.hasLink("outer"))
        #expect(try !file.hasLink("nope"))
    }

    @Test func missingObjectsAndBadFilesThrowNamingWhatFailed() throws {
        let file = try HDF5File(readOnly: strings)
        let missing = try #require(throws: HDF5Error.self) { try file.group("outer/absent") }
        #expect(missing.description.contains("open group '/outer/absent'"))
        let notHDF5 = try #require(throws: HDF5Error.self) {
            try HDF5File(readOnly: dir.appendingPathComponent("not_hdf5.h5").path)
        }
        #expect(notHDF5.description.contains("open HDF5 file"))
        // HDF5's own explanation comes along from its error stack.
        #expect(notHDF5.detail != nil)
    }
}
