//! transfer: under construction.
