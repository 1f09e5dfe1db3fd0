//! outpost: a firmware-style edge inference runtime.
//!
//! The modules follow the data path: `config`/`boards` decide how this machine is set up,
//! provisioning fills the model cache, backends run models, capture feeds frames, vision turns
//! tensors into boxes, sinks deliver them. `main.rs` only parses arguments and maps errors to
//! exit codes.

// `unsafe` only at FFI: the glibc build's ONNX Runtime backend asks the CUDA driver and TensorRT
// for their versions (src/backend/onnxruntime/gpu.rs, its one exception). The default build forbids it.
#![cfg_attr(not(feature = "onnxruntime"), forbid(unsafe_code))]
#![cfg_attr(feature = "onnxruntime", deny(unsafe_code))]

pub mod backend;
pub mod boards;
pub mod build_info;
pub mod capture;
pub mod cli;
pub mod commands;
pub mod config;
pub mod detector;
pub mod exit;
pub mod http;
pub mod logging;
pub mod models;
pub mod notify;
pub mod pause;
pub mod pipeline;
pub mod provision;
pub mod redact;
pub mod sinks;
pub mod storage;
pub mod vision;
