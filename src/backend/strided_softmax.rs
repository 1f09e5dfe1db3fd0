//! A softmax over a non-innermost axis, for tract. YOLOv8's DFL head takes a softmax over the 16
//! bins of `[1, 4, 16, 8400]`; tract 0.23.9 evaluates every such strided lane through a scalar
//! ndarray path (70 ms of yolov8n's 262 ms on one thread, where onnxruntime takes 5 ms), and its
//! declutter pass moves any transpose we add back into the softmax axis. So, between declutter
//! and codegen, [`replace_strided_softmax`] swaps those nodes for [`StridedSoftmax`], which walks
//! whole rows of the inner dimensions at once: max, exp and sum become element-wise loops over
//! contiguous memory that the compiler vectorises (`outpost_kernels::softmax_strided`).

use outpost_kernels::softmax_strided;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

/// Replaces every float softmax whose one axis is not the innermost. Returns how many.
pub fn replace_strided_softmax(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(op) = node.op_as::<Softmax>() else {
            continue;
        };
        let fact = model.outlet_fact(node.inputs[0])?;
        let rank = fact.rank();
        let strided = op.kind == SoftmaxKind::Softmax
            && op.quant_output_dt.is_none()
            && (fact.datum_type == f32::datum_type() || fact.datum_type == f16::datum_type())
            && op.axes.len() == 1
            && op.axes[0] + 1 < rank;
        if !strided {
            continue;
        }
        let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs, StridedSoftmax { axis: op.axes[0] })?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StridedSoftmax {
    pub axis: usize,
}

impl Op for StridedSoftmax {
    fn name(&self) -> StaticName {
        "OutpostStridedSoftmax".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("axis: {}", self.axis)])
    }

    op_as_typed_op!();
}

impl EvalOp for StridedSoftmax {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        // Half precision (inference.precision = "f16") is computed in f32: 16 values per lane.
        let half = input.datum_type() == f16::datum_type();
        let mut tensor = if half { input.cast_to::<f32>()?.into_owned() } else { input.into_tensor() };
        let shape = tensor.shape().to_vec();
        let lanes = shape[self.axis];
        let inner: usize = shape[self.axis + 1..].iter().product();
        let mut plain = tensor.try_as_plain_ram_mut()?;
        let data = plain.as_slice_mut::<f32>()?;
        softmax_strided(data, lanes, inner);
        drop(plain);
        if half {
            tensor = tensor.cast_to::<f16>()?.into_owned();
        }
        Ok(tvec!(tensor.into_tvalue()))
    }
}

impl TypedOp for StridedSoftmax {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
    }

    fn axes_mapping(&self, inputs: &[&TypedFact], outputs: &[&TypedFact]) -> TractResult<AxesMapping> {
        AxesMapping::natural(inputs, outputs)
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_kernels::exp_nonpositive;

    #[test]
    fn exp_matches_libm_within_a_few_ulp() {
        let mut worst = 0f32;
        for i in 0..=87_000 {
            let x = -(i as f32) / 1000.0;
            let (got, want) = (exp_nonpositive(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(exp_nonpositive(-200.0), 0.0);
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    #[test]
    fn strided_softmax_equals_the_definition() {
        let (outer, lanes, inner) = (3, 16, 37);
        let data: Vec<f32> = (0..outer * lanes * inner).map(|i| ((i * 7919) % 1000) as f32 / 50.0 - 10.0).collect();
        let mut got = data.clone();
        softmax_strided(&mut got, lanes, inner);
        for o in 0..outer {
            for i in 0..inner {
                let at = |l: usize| o * lanes * inner + l * inner + i;
                let max = (0..lanes).map(|l| data[at(l)]).fold(f32::MIN, f32::max);
                let sum: f64 = (0..lanes).map(|l| ((data[at(l)] - max) as f64).exp()).sum();
                for l in 0..lanes {
                    let want = ((data[at(l)] - max) as f64).exp() / sum;
                    assert!((got[at(l)] as f64 - want).abs() < 1e-6, "[{o},{l},{i}] {} vs {want}", got[at(l)]);
                }
            }
        }
    }


    #[test]
    fn replaces_only_strided_float_softmax_and_keeps_results() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 4, 16, 10])).unwrap();
        let mid = model.wire_node("mid", Softmax::new(tvec!(2), None, SoftmaxKind::Softmax), &[x]).unwrap();
        let last = model.wire_node("last", Softmax::new(tvec!(3), None, SoftmaxKind::Softmax), &mid).unwrap();
        model.select_output_outlets(&last).unwrap();
        let input: Vec<f32> = (0..640).map(|i| (i % 23) as f32 * 0.37 - 4.0).collect();
        let tensor = Tensor::from_shape(&[1, 4, 16, 10], &input).unwrap();
        let run = |m: &TypedModel| {
            let plan = m.clone().into_runnable().unwrap();
            plan.run(tvec!(tensor.clone().into())).unwrap()[0]
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<f32>>()
        };
        let want = run(&model);
        assert_eq!(replace_strided_softmax(&mut model).unwrap(), 1);
        assert!(model.nodes().iter().any(|n| n.op_is::<StridedSoftmax>()));
        assert!(model.nodes().iter().any(|n| n.op_is::<Softmax>()), "the innermost softmax stays tract's");
        let got = run(&model);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
    }
}
