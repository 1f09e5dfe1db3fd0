//! Stride-2 convolutions on tract's im2col path. tract 0.23.9 sends small-kernel f32 convs to its
//! `DirectSpatialConv`, which is quick at stride 1 but slow at stride 2: yolov8n's `/conv_8`
//! (16→32 channels, 3x3, stride 2) takes 46 ms there and 14 ms as im2col + matrix product. tract
//! has one switch for that choice (`TRACT_DISABLE_DIRECT_SPATIAL`), model-wide, and turning it off
//! for the whole model slows the stride-1 convs more than it saves. So these convs are lowered
//! here, one node at a time with the switch off, before the optimiser lowers the rest.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::knobs::KnobScope;
use tract_onnx::tract_core::ops::cnn::Conv;
use tract_onnx::tract_core::ops::nn::DataFormat;

/// Lowers the strided convs [`would_go_direct`] picks. Returns how many.
pub fn lower_strided_convs(model: &mut TypedModel) -> TractResult<usize> {
    let scope = KnobScope::new([("TRACT_DISABLE_DIRECT_SPATIAL", "1")])?;
    scope.enter(|| {
        let mut lowered = 0;
        for id in model.eval_order()? {
            let node = model.node(id);
            let Some(conv) = node.op_as::<Conv>() else {
                continue;
            };
            if !would_go_direct(conv, model.outlet_fact(node.inputs[0])?) {
                continue;
            }
            if let Some(patch) = conv.codegen(model, node)? {
                patch.apply(model)?;
                lowered += 1;
            }
        }
        Ok(lowered)
    })
}

/// A strided conv that tract would send to `DirectSpatialConv` (its rule, less the output-width
/// floor): group 1, f32, 2-D NCHW, a kernel of 2+ taps and at most 576 inputs per output point.
/// Depthwise and 1x1 convs are left alone: lowering them early only takes fusions away (CenterFace
/// ran 8 % slower). A stem conv over the 3 colour channels stays direct too: measured 10 ms
/// direct against 16 ms im2col on yolov8n's `/conv_3`.
fn would_go_direct(conv: &Conv, input: &TypedFact) -> bool {
    let taps: usize = conv.pool_spec.kernel_shape.iter().product();
    conv.pool_spec.strides().iter().any(|&s| s > 1)
        && input.datum_type == f32::datum_type()
        && conv.q_params.is_none()
        && conv.group == 1
        && conv.pool_spec.rank() == 2
        && conv.pool_spec.data_format == DataFormat::NCHW
        && taps >= 2
        && conv.input_channels() >= 4
        && conv.input_channels() * taps <= 576
}
