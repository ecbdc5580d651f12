//! The versioned flow-run message: under construction.
