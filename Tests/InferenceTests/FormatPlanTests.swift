import Foundation
import Inference
import Testing
import TestSupport

/// The format table: every x86-64 ISA oneDNN knows gets an fp32 plan whose block is its vector
/// width, bf16 only where the CPU has bf16, and the engine reports each layer's implementation.
struct FormatPlanTests {
    @Test(arguments: CPUISA.known) func fp32BlockIsTheVectorWidth(_ isa: CPUISA) throws {
        let plan = try #require(FormatPlan.plan(for: .fp32, on: isa), "\(isa): no fp32 plan")
        #expect(plan.dataType == .f32)
        // f32 lanes per register: 8 with AVX/AVX2 (and SSE4.1, whose jit kernels use 2 x 4), 16 with AVX-512.
        #expect(plan.activations == (isa.includes(.avx512Core) ? .blocked16 : .blocked8), "\(isa): \(plan.activations)")
    }

    @Test(arguments: CPUISA.known) func bf16OnlyWithBF16Instructions(_ isa: CPUISA) {
        let plan = FormatPlan.plan(for: .bf16, on: isa)
        if !isa.includes(.avx512CoreBF16) {
            #expect(plan == nil, "\(isa) has no bf16 instructions but got \(String(describing: plan))")
        } else {
            #expect(plan?.dataType == .bf16)
            // With AMX oneDNN's own choice (nhwc) keeps the AMX kernels; a forced block turns them off.
            #expect(plan?.activations == (isa.includes(.avx512CoreAMX) ? .any : .blocked16))
        }
    }

    @Test func instructionSetsNestAndAreNamedAsOneDNNDoes() {
        #expect(CPUISA.avx2.includes(.sse41) && CPUISA.avx2.includes(.avx) && !CPUISA.avx2.includes(.avx512Core))
        #expect(CPUISA.avx512CoreAMX.includes(.avx512CoreBF16) && !CPUISA.avx2VNNI.includes(.avx512Core))
        #expect(CPUISA.named("AVX512_CORE") == .avx512Core && CPUISA.named("avx2") == .avx2 && CPUISA.named("mmx") == nil)
        #expect(CPUISA.known.contains(CPUISA.effective), "oneDNN reports an ISA the table does not know: \(CPUISA.effective)")
    }

    @Test func layoutOverrideForMeasurementsOnly() throws {
        let plan = try #require(FormatPlan.plan(for: .fp32, on: .avx2, environment: ["FRAMEPIPE_ACTIVATION_LAYOUT": "nhwc"]))
        #expect(plan.activations == .channelsLast)
        #expect(FormatPlan.plan(for: .fp32, on: .avx2, environment: ["FRAMEPIPE_ACTIVATION_LAYOUT": "bogus"])?.activations == .blocked8)
        #expect(FormatPlan.plan(for: .bf16, on: .avx2, environment: ["FRAMEPIPE_ACTIVATION_LAYOUT": "nhwc"]) == nil)
        #expect(FormatPlan.plan(for: .fp32, on: .avx2)?.fuseDepthwise == true)
        #expect(FormatPlan.plan(for: .fp32, on: .avx2, environment: ["FRAMEPIPE_DW_FUSION": "0"])?.fuseDepthwise == false)
    }

    @Test(.enabled(if: TestEnv.hasAssets)) func engineReportsEveryLayerAndNoReferenceKernel() throws {
        let model = try Model.load(path: TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx"))
        let engine = try Engine(model: model, maxBatch: 2, threads: 2)
        #expect(engine.plan == FormatPlan.plan(for: .fp32))
        let layers = try engine.compiledLayers(batch: 2)
        let all = try engine.compiledLayers(batch: 2, includeOutputs: true)
        #expect(all.count == layers.count + 2 && all.suffix(2).allSatisfy { $0.kind == .reorder })
        #expect(layers.first?.layer == "t56_pre" && layers.first?.kind == .convolution)
        #expect(layers.last?.layer == "logits" && layers.last?.kind == .innerProduct)
        #expect(layers.contains { $0.kind == .pooling })
        #expect(engine.referenceLayers.isEmpty, "\(engine.referenceLayers)")
        #expect(!layers.contains { $0.implementation.isEmpty || $0.implementation == "?" })
        let families = CompiledLayer.families(layers)
        #expect(families.reduce(0) { $0 + $1.count } == layers.count)
    }
}
