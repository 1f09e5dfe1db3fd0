//! An ONNX file with its input's declared size rewritten. Some files declare a size they are not
//! run at (CenterFace says `[10, 3, 32, 32]` and runs at the image's size); tract takes the size
//! at run time, but rten and ONNX Runtime hold a run to the declaration, so they load the model
//! once per input size with this rewrite.

use prost::Message;
use tract_onnx::pb::{tensor_shape_proto::dimension::Value, tensor_shape_proto::Dimension, type_proto, ModelProto};

/// The ONNX file with its (first non-weight) input declared as `dims`.
pub fn with_input_dims(bytes: &[u8], dims: [usize; 4]) -> anyhow::Result<Vec<u8>> {
    let mut model = ModelProto::decode(bytes)?;
    set_input_dims(&mut model, dims)?;
    Ok(model.encode_to_vec())
}

/// The file as ONNX Runtime runs it fastest, at `dims`: old exports list every weight as a graph
/// input too (CenterFace), which makes ONNX Runtime treat the weights as overridable and skip
/// constant folding; they are dropped from the inputs (as onnxruntime-python users do by hand).
/// Output shapes are cleared: the file's (for its declared size) would be wrong at `dims`.
#[cfg(feature = "onnxruntime")]
pub fn for_onnxruntime(bytes: &[u8], dims: [usize; 4]) -> anyhow::Result<Vec<u8>> {
    let mut model = ModelProto::decode(bytes)?;
    set_input_dims(&mut model, dims)?;
    let graph = model.graph.as_mut().ok_or_else(|| anyhow::anyhow!("no graph"))?;
    let weights: std::collections::HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    graph.input.retain(|i| !weights.contains(&i.name));
    for output in &mut graph.output {
        if let Some(type_proto::Value::TensorType(tensor)) = output.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            tensor.shape = None;
        }
    }
    Ok(model.encode_to_vec())
}

fn set_input_dims(model: &mut ModelProto, dims: [usize; 4]) -> anyhow::Result<()> {
    let graph = model.graph.as_mut().ok_or_else(|| anyhow::anyhow!("no graph"))?;
    let weights: std::collections::HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    let input = graph.input.iter_mut().find(|i| !weights.contains(&i.name)).ok_or_else(|| anyhow::anyhow!("no input"))?;
    let Some(type_proto::Value::TensorType(tensor)) = input.r#type.as_mut().and_then(|t| t.value.as_mut()) else {
        anyhow::bail!("input `{}` is not a tensor", input.name);
    };
    let shape = tensor.shape.get_or_insert_with(Default::default);
    shape.dim = dims.iter().map(|&d| Dimension { denotation: String::new(), value: Some(Value::DimValue(d as i64)) }).collect();
    Ok(())
}
