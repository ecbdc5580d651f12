//! transfer: the flow-run engine (under construction).

pub mod local;
pub mod report;
pub mod retry;
pub mod selection;

pub use report::{Direction, FileError, FileReport, Outcome, RunInfo, RunReport, Totals};
pub use retry::RetryPolicy;
pub use selection::{FileFilter, LocalFile, Selection};
