import Testing
import TestSupport

@Suite struct KerasImportTestsSmoke {
    @Test func packageRootHasManifest() {
        #expect(TestEnv.packageRoot.appendingPathComponent("Package.swift").path.hasSuffix("Package.swift"))
    }
}
