//! From pixels to boxes: decode and orient images, letterbox or stretch them into the model's
//! input, and decode the model's outputs per family into detections on the original image.

pub mod detection;
pub mod environment;
pub mod families;
pub mod image;
pub mod preprocess;
pub mod response;
