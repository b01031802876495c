import Foundation
import Testing
@testable import KerasImport

@Suite struct KerasConfigTests {
    @Test func parsesKeras3FunctionalWiringWithAListArgument() throws {
        let json = """
        {"class_name": "Functional", "config": {"name": "m", "layers": [
          {"class_name": "InputLayer", "name": "in", "config": {"batch_shape": [null, 4, 4, 3]}, "inbound_nodes": []},
          {"class_name": "ReLU", "name": "r", "config": {"name": "r"}, "inbound_nodes": [{"args": [
            {"class_name": "__keras_tensor__", "config": {"keras_history": ["in", 0, 0]}}], "kwargs": {}}]},
          {"class_name": "Add", "name": "a", "config": {"name": "a"}, "inbound_nodes": [{"args": [[
            {"class_name": "__keras_tensor__", "config": {"keras_history": ["in", 0, 0]}},
            {"class_name": "__keras_tensor__", "config": {"keras_history": ["r", 0, 0]}}]], "kwargs": {}}]}],
          "input_layers": ["in", 0, 0], "output_layers": [["a", 0, 0]]}}
        """
        let model = try KerasModelConfig(json: json)
        #expect(model.name == "m")
        #expect(model.layers.map(\.className) == ["InputLayer", "ReLU", "Add"])
        #expect(model.layers[2].inboundNodes == [[KerasTensorRef(layer: "in", node: 0, tensor: 0),
                                                  KerasTensorRef(layer: "r", node: 0, tensor: 0)]])
        #expect(model.inputs == [KerasTensorRef(layer: "in", node: 0, tensor: 0)])
        #expect(model.outputs == [KerasTensorRef(layer: "a", node: 0, tensor: 0)])
        #expect(model.layers[0].config["batch_shape"]?.array?.count == 4)
    }

    @Test func parsesKeras2InboundNodes() throws {
        let json = """
        {"class_name": "Model", "config": {"name": "old", "layers": [
          {"class_name": "InputLayer", "name": "x", "config": {"batch_input_shape": [null, 2, 2, 1]}, "inbound_nodes": []},
          {"class_name": "Add", "name": "s", "config": {}, "inbound_nodes": [[["x", 0, 0, {}], ["x", 0, 0, {}]]]}],
          "input_layers": [["x", 0, 0]], "output_layers": [["s", 0, 0]]}}
        """
        let model = try KerasModelConfig(json: json)
        #expect(model.layers[1].inboundNodes == [[KerasTensorRef(layer: "x", node: 0, tensor: 0),
                                                  KerasTensorRef(layer: "x", node: 0, tensor: 0)]])
    }

    @Test func rejectsBadJSONAndNonModels() {
        #expect(throws: ConfigError.self) { try KerasModelConfig(json: "{oops") }
        let notModel = #"{"class_name": "Conv2D", "config": {"name": "c"}}"#
        let error = #expect(throws: ConfigError.self) { try KerasModelConfig(json: notModel) }
        #expect(error?.description.contains("Conv2D") == true)
    }

    @Test func jsonValuesKeepBooleansAndNumbersApart() throws {
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(#"{"a": true, "b": 1, "c": 1.5, "d": null}"#.utf8))
        #expect(value["a"]?.bool == true)
        #expect(value["a"]?.int == nil)
        #expect(value["b"]?.int == 1)
        #expect(value["c"]?.int == nil)
        #expect(value["c"]?.double == 1.5)
        #expect(value["d"]?.isNull == true)
    }
}

@Suite struct LayoutAndPaddingTests {
    /// TF SAME: the odd padding pixel goes after (bottom/right); valid pads nothing.
    @Test(arguments: [
        (size: 160, kernel: 3, stride: 2, begin: 0, end: 1),
        (size: 80, kernel: 3, stride: 1, begin: 1, end: 1),
        (size: 5, kernel: 1, stride: 1, begin: 0, end: 0),
        (size: 7, kernel: 3, stride: 2, begin: 1, end: 1),
        (size: 6, kernel: 4, stride: 1, begin: 1, end: 2),
        (size: 3, kernel: 5, stride: 1, begin: 2, end: 2),
    ])
    func samePaddingMatchesTensorFlow(size: Int, kernel: Int, stride: Int, begin: Int, end: Int) throws {
        let pads = try #require(KerasImporter.kerasPadding("same", size: size, kernel: kernel, stride: stride, dilation: 1))
        #expect(pads.begin == begin && pads.end == end)
        let valid = try #require(KerasImporter.kerasPadding("valid", size: size, kernel: kernel, stride: stride, dilation: 1))
        #expect(valid.begin == 0 && valid.end == 0)
        #expect(KerasImporter.kerasPadding("causal", size: size, kernel: kernel, stride: stride, dilation: 1) == nil)
    }

    @Test func dilatedSamePaddingUsesTheEffectiveKernel() throws {
        // k=3, d=2 spans 5 pixels: SAME at stride 1 pads 2 + 2.
        let pads = try #require(KerasImporter.kerasPadding("same", size: 9, kernel: 3, stride: 1, dilation: 2))
        #expect(pads.begin == 2 && pads.end == 2)
    }

    @Test func hwioKernelBecomesOIHW() {
        // value encodes its HWIO index: h*1000 + w*100 + i*10 + o.
        let (kh, kw, ci, co) = (2, 3, 4, 5)
        var data: [Float] = []
        for h in 0..<kh { for w in 0..<kw { for i in 0..<ci { for o in 0..<co { data.append(Float(h * 1000 + w * 100 + i * 10 + o)) } } } }
        let oihw = KerasImporter.hwioToOIHW(.init(shape: [kh, kw, ci, co], data: data))
        #expect(oihw.shape == [co, ci, kh, kw])
        for o in 0..<co { for i in 0..<ci { for h in 0..<kh { for w in 0..<kw {
            #expect(oihw.data[((o * ci + i) * kh + h) * kw + w] == Float(h * 1000 + w * 100 + i * 10 + o))
        } } } }
    }

    @Test func depthwiseKernelBecomesGroupedOIHWWithChannelMajorMultiplier() {
        let (kh, kw, c, m) = (3, 2, 4, 3)
        var data: [Float] = []
        for h in 0..<kh { for w in 0..<kw { for ch in 0..<c { for q in 0..<m { data.append(Float(h * 1000 + w * 100 + ch * 10 + q)) } } } }
        let oihw = KerasImporter.depthwiseToOIHW(.init(shape: [kh, kw, c, m], data: data))
        #expect(oihw.shape == [c * m, 1, kh, kw])
        for ch in 0..<c { for q in 0..<m { for h in 0..<kh { for w in 0..<kw {
            #expect(oihw.data[((ch * m + q) * kh + h) * kw + w] == Float(h * 1000 + w * 100 + ch * 10 + q))
        } } } }
    }

    @Test func weightNamesSplitIntoLayerAndVariable() {
        #expect(KerasWeights.split("block_1_expand/kernel:0", group: "g") == ("block_1_expand", "kernel"))
        #expect(KerasWeights.split("dense/bias", group: "dense") == ("dense", "bias"))
        #expect(KerasWeights.split("outer/inner/gamma", group: "outer") == ("inner", "gamma"))
        #expect(KerasWeights.split("kernel", group: "solo") == ("solo", "kernel"))
    }
}
