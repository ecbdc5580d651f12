//! broker: under construction.
