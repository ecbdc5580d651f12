//! ftps: under construction.
