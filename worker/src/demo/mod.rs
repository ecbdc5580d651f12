//! `ferry-worker demo`: ferry's main job end to end on one machine, with nothing but this
//! binary. It starts a real FTPS partner on loopback (`partner.rs`), writes a
//! configuration with CA verification on in a scratch folder (`configuration.rs`),
//! creates sample files (`samples.rs`), and runs an upload flow and a download flow
//! twice through the same engine as `ferry-worker run`: the first run delivers every
//! file, the second skips every one as a duplicate (`walkthrough.rs`). It ends with one
//! line a script can check, `demo: ok: ...` (exit 0) or `demo: FAILED: ...` (exit 1).

mod configuration;
mod partner;
mod samples;
mod walkthrough;

pub use walkthrough::run;
