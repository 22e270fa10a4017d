//! The cluster controller of Sluice (Kafka's KRaft `QuorumController`), as a plain state
//! machine. (Module docs: see the end of this work; filled in below.)

mod controller;
mod error;
mod image;
mod placement;
mod record;

#[cfg(test)]
mod tests;

pub use controller::*;
pub use error::{codes, ControllerError};
pub use image::*;
pub use placement::assign_replicas;
pub use record::*;
