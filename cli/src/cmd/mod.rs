//! One module per command: each turns its arguments into options, calls the
//! library, and prints the result.

pub mod build;
pub mod image_build;
pub mod images;
pub mod inspect;
pub mod install;
pub mod keygen;
pub mod node;
pub mod token;
pub mod verify;
