//! config: under construction.
