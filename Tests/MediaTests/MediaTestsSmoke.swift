import Testing
import TestSupport

@Suite struct MediaTestsSmoke {
    @Test func packageRootHasManifest() {
        #expect(TestEnv.packageRoot.appendingPathComponent("Package.swift").path.hasSuffix("Package.swift"))
    }
}
