//! idempotency: under construction.
