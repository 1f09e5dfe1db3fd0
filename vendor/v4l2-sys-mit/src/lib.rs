//! Raw V4L2 bindings: the output of bindgen over `<linux/videodev2.h>`, generated per architecture
//! by `scripts/v4l2-bindgen` (CI checks that a fresh run still matches).
#![allow(clippy::all)]
#![allow(deref_nullptr)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(non_upper_case_globals)]

#[cfg(target_arch = "x86_64")]
include!("bindings/x86_64.rs");
#[cfg(target_arch = "aarch64")]
include!("bindings/aarch64.rs");
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!(
    "no committed V4L2 bindings for this architecture: add it to scripts/v4l2-bindgen/src/main.rs, \
     run `cargo run --manifest-path scripts/v4l2-bindgen/Cargo.toml` and commit the result, or build \
     without the v4l2 feature (--no-default-features)"
);
