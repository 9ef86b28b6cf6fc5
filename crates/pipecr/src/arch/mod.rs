//! What depends on the processor: how the saved registers of the image map to the
//! kernel's register sets, one module per architecture.

pub mod x86_64;
