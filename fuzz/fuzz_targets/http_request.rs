//! The HTTP request path of `serve` after the socket: the head, then the inference request as
//! the Roboflow client sends it (JSON with base64 or URL images, multipart, query options).
#![no_main]
use libfuzzer_sys::fuzz_target;
use outpost::http::{infer, server};

fuzz_target!(|data: &[u8]| {
    let peer = "127.0.0.1:9001".parse().unwrap();
    let Ok(Some((head_len, mut req))) = server::parse_head(data, peer, 16 * 1024) else { return };
    req.body = data[head_len..].to_vec();
    let _ = server::percent_decode(&req.path);
    let _ = req.query_param("confidence");
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(&req.body) {
        if let Ok(v1) = infer::parse_v1(&body) {
            let _ = v1;
        }
    }
    if let Ok((bytes, _options)) = infer::parse_v0(&req) {
        outpost::vision::image::set_max_pixels(1 << 22);
        let _ = infer::decode_image(&bytes);
    }
});
