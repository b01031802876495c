import Testing
import Output
@testable import Pipeline

@Suite struct EmbeddingPoolerTests {
    func pool(_ mode: PoolMode, _ rows: [[Float]]) -> [Float]? {
        var p = EmbeddingPooler(mode: mode)
        for r in rows { r.withUnsafeBufferPointer { p.add($0) } }
        return p.result
    }

    @Test func meanAndMaxAreElementWise() {
        let rows: [[Float]] = [[1, -2, 3], [3, 2, -1], [2, 6, 1]]
        #expect(pool(.mean, rows) == [2, 2, 1])
        #expect(pool(.max, rows) == [3, 6, 3])
        #expect(pool(.mean, []) == nil)
        #expect(pool(.max, [[-5, -7]]) == [-5, -7])
    }
}
