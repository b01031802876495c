import Testing
import TestSupport

@Suite struct ServiceTestsSmoke {
    @Test func packageRootHasManifest() {
        #expect(TestEnv.packageRoot.appendingPathComponent("Package.swift").path.hasSuffix("Package.swift"))
    }
}
