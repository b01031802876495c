import Foundation
import Testing
import Output
@testable import Pipeline

@Suite struct SegmentTrackerTests {
    /// Feeds labels at 25 fps; returns every segment, the last from `finish()`.
    func segments(_ labels: [Int?], min: Double = 0.5) -> [LabelSegment] {
        var t = SegmentTracker(minDuration: min)
        var out: [LabelSegment] = []
        for (i, l) in labels.enumerated() {
            if let s = t.add(pts: Double(i) * 0.04, top: l.map { LabelScore(index: $0, label: "L\($0)", score: 0.5) }) {
                out.append(s)
            }
        }
        if let s = t.finish() { out.append(s) }
        return out
    }

    @Test func steadyLabelsGiveOneSegmentEach() {
        let s = segments(Array(repeating: 1, count: 50) + Array(repeating: 2, count: 50))
        #expect(s.count == 2)
        #expect(s[0].number == 0 && s[0].index == 1 && s[0].start == 0 && abs(s[0].end - 2.0) < 1e-9 && s[0].frames == 50)
        #expect(s[1].number == 1 && s[1].index == 2 && abs(s[1].start - 2.0) < 1e-9 && abs(s[1].end - 4.0) < 1e-9)
        #expect(s[1].frames == 50 && s[1].label == "L2" && s[1].scoreMean == 0.5)
    }

    @Test func shortFlickerStaysInsideTheSegment() {
        // 5 frames (0.2 s) of label 9 in the middle of label 1: no new segment.
        let s = segments(Array(repeating: 1, count: 30) + Array(repeating: 9, count: 5) + Array(repeating: 1, count: 30))
        #expect(s.count == 1)
        #expect(s[0].index == 1 && s[0].frames == 65 && abs(s[0].end - 2.6) < 1e-9)
        // A 13-frame run (0.52 s) holds long enough.
        let t = segments(Array(repeating: 1, count: 30) + Array(repeating: 9, count: 13) + Array(repeating: 1, count: 30))
        #expect(t.map(\.index) == [1, 9, 1])
        #expect(abs(t[1].start - 1.2) < 1e-9 && abs(t[1].end - 1.72) < 1e-9 && t[1].frames == 13)
    }

    @Test func segmentClosesAsSoonAsTheNextHolds() {
        var t = SegmentTracker(minDuration: 0.5)
        var closedAt: Int?
        for i in 0..<100 {
            let l = i < 50 ? 1 : 2
            if t.add(pts: Double(i) * 0.04, top: LabelScore(index: l, label: nil, score: 1)) != nil, closedAt == nil {
                closedAt = i
            }
        }
        // Label 2 starts at frame 50 and has held 0.5 s after 13 frames (50...62).
        #expect(closedAt == 62)
    }

    @Test func inputShorterThanTheMinimumStillHasASegment() {
        let s = segments([3, 3, 3], min: 1)
        #expect(s.count == 1 && s[0].index == 3 && s[0].frames == 3 && abs(s[0].end - 0.12) < 1e-9)
        #expect(segments([]).isEmpty)
    }

    @Test func unlabelledFramesJoinTheRunningSegment() {
        let s = segments(Array(repeating: 1, count: 20) + [nil, nil] + Array(repeating: 1, count: 20))
        #expect(s.count == 1 && s[0].frames == 42)
    }

    @Test func segmentRecordAndCSVRow() throws {
        let seg = LabelSegment(number: 2, index: 20, label: "chick, adee", start: 2.0000000001, end: 4, frames: 50, scoreMean: 0.75)
        let obj = try JSONSerialization.jsonObject(with: Data(RecordEncoder.segmentLine(input: "a.mp4", seg))) as! [String: Any]
        #expect(obj["v"] as? Int == 1 && obj["input"] as? String == "a.mp4" && obj["segment"] as? Int == 2)
        #expect(obj["label"] as? String == "chick, adee" && obj["index"] as? Int == 20)
        #expect(obj["start"] as? Double == 2.0 && obj["end"] as? Double == 4.0 && obj["frames"] as? Int == 50)
        #expect(obj["score_mean"] as? Double == 0.75)
        #expect(CSV.row(RecordEncoder.segmentCSVFields(seg)) == "2,20,\"chick, adee\",2.0,4.0,50,0.75\n")
    }
}
