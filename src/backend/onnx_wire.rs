//! ONNX files with their packed repeated numbers written out one by one. Protobuf lets a writer
//! pack `repeated int64 dims = 1` into one length-delimited field or write each value as its own
//! field, and readers must take both; rten 0.27's reader takes only the second, so it refuses
//! CenterFace's and layout_cdla's files (and any file prost or onnx's Python writer made). This
//! rewrites, at the wire level, just the packed numeric fields of the messages that can hold
//! them; everything else (weights in `raw_data` included) is copied byte for byte.

/// How a field of a message is rewritten.
#[derive(Clone, Copy)]
enum Field {
    /// An embedded message, rewritten recursively.
    Message(Schema),
    /// Repeated varints (int32, int64, uint64, enums).
    Varints,
    /// Repeated 4-byte values (float).
    Fixed32,
    /// Repeated 8-byte values (double).
    Fixed64,
}

#[derive(Clone, Copy)]
enum Schema {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
}

impl Schema {
    /// Field numbers from onnx.proto; fields not listed are copied unchanged.
    fn field(self, number: u64) -> Option<Field> {
        use Field::*;
        match (self, number) {
            (Schema::Model, 7) => Some(Message(Schema::Graph)),
            // node, initializer
            (Schema::Graph, 1) => Some(Message(Schema::Node)),
            (Schema::Graph, 5) => Some(Message(Schema::Tensor)),
            (Schema::Node, 5) => Some(Message(Schema::Attribute)),
            // t, g, floats, ints, tensors, graphs
            (Schema::Attribute, 5) | (Schema::Attribute, 10) => Some(Message(Schema::Tensor)),
            (Schema::Attribute, 6) | (Schema::Attribute, 11) => Some(Message(Schema::Graph)),
            (Schema::Attribute, 7) => Some(Fixed32),
            (Schema::Attribute, 8) => Some(Varints),
            // dims, float_data, int32_data, int64_data, double_data, uint64_data
            (Schema::Tensor, 1) | (Schema::Tensor, 5) | (Schema::Tensor, 7) | (Schema::Tensor, 11) => Some(Varints),
            (Schema::Tensor, 4) => Some(Fixed32),
            (Schema::Tensor, 10) => Some(Fixed64),
            _ => None,
        }
    }
}

/// The model file with every packed repeated number unpacked. Fails only on malformed protobuf.
pub fn unpack_repeated(model: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(model.len() + model.len() / 16);
    rewrite(model, Schema::Model, &mut out)?;
    Ok(out)
}

fn rewrite(mut msg: &[u8], schema: Schema, out: &mut Vec<u8>) -> Result<(), String> {
    while !msg.is_empty() {
        let start = msg;
        let key = varint(&mut msg)?;
        let (number, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(&mut msg)?;
            }
            1 => msg = msg.get(8..).ok_or("truncated fixed64")?,
            5 => msg = msg.get(4..).ok_or("truncated fixed32")?,
            2 => {
                let len = usize::try_from(varint(&mut msg)?).map_err(|_| "length too large")?;
                let body = msg.get(..len).ok_or("truncated field")?;
                msg = &msg[len..];
                match schema.field(number) {
                    Some(Field::Message(inner)) => {
                        let mut rewritten = Vec::with_capacity(body.len());
                        rewrite(body, inner, &mut rewritten)?;
                        put_varint(out, key);
                        put_varint(out, rewritten.len() as u64);
                        out.extend_from_slice(&rewritten);
                    }
                    Some(Field::Varints) => {
                        let mut values = body;
                        while !values.is_empty() {
                            let before = values;
                            varint(&mut values)?;
                            put_varint(out, number << 3);
                            out.extend_from_slice(&before[..before.len() - values.len()]);
                        }
                    }
                    Some(Field::Fixed32) | Some(Field::Fixed64) => {
                        let (size, wire) = if matches!(schema.field(number), Some(Field::Fixed32)) { (4, 5) } else { (8, 1) };
                        if body.len() % size != 0 {
                            return Err(format!("packed field {number} of {} bytes", body.len()));
                        }
                        for value in body.chunks_exact(size) {
                            put_varint(out, number << 3 | wire);
                            out.extend_from_slice(value);
                        }
                    }
                    None => out.extend_from_slice(&start[..start.len() - msg.len()]),
                }
                continue;
            }
            other => return Err(format!("wire type {other} (groups are not ONNX)")),
        }
        out.extend_from_slice(&start[..start.len() - msg.len()]);
    }
    Ok(())
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use tract_onnx::pb::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};

    fn sample() -> ModelProto {
        let tensor = TensorProto {
            dims: vec![2, 3, 300],
            float_data: vec![1.5, -2.0],
            int64_data: vec![-1, 1 << 40],
            raw_data: vec![7; 20],
            name: "w".into(),
            ..Default::default()
        };
        let attribute = AttributeProto { name: "pads".into(), ints: vec![1, -1, 0, 200], floats: vec![0.5], ..Default::default() };
        let node = NodeProto { op_type: "Conv".into(), attribute: vec![attribute], ..Default::default() };
        let graph = GraphProto { node: vec![node], initializer: vec![tensor], ..Default::default() };
        ModelProto { ir_version: 8, graph: Some(graph), ..Default::default() }
    }

    #[test]
    fn unpacked_file_decodes_to_the_same_model_without_packed_fields() {
        let model = sample();
        let packed = model.encode_to_vec();
        let unpacked = unpack_repeated(&packed).unwrap();
        assert_ne!(packed, unpacked);
        assert_eq!(ModelProto::decode(unpacked.as_slice()).unwrap(), model, "readers see the same model");
        // dims 2, 3, 300 now appear as three (field 1, varint) entries: key 0x08 each.
        let dims_key_count = unpacked.windows(2).filter(|w| w == &[0x08, 0x02] || w == &[0x08, 0x03]).count();
        assert!(dims_key_count >= 2, "dims written one by one");
        assert_eq!(unpack_repeated(&unpacked).unwrap(), unpacked, "idempotent");
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let packed = sample().encode_to_vec();
        for cut in [1, packed.len() / 2, packed.len() - 1] {
            assert!(unpack_repeated(&packed[..cut]).is_err(), "cut at {cut}");
        }
        assert!(unpack_repeated(&[0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err(), "declared length beyond the end");
        assert!(unpack_repeated(&[0x0b]).is_err(), "group wire type");
    }
}
