//! Secret references and their resolution: under construction.

mod secret;

pub use secret::Secret;
