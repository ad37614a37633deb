//! All integration tests link into this one binary (one link step on 2 cores).
mod support;
mod harness_smoke;
