//! End-to-end tests in one binary (built once, run one at a time).

mod at_rest;
mod browser;
mod canary;
mod cartfiles;
mod common;
mod dicomgen;
mod faults;
mod fleet;
mod hospital;
mod imaging;
mod lifecycle;
mod loadgen;
mod preread;
mod rollouts;
mod security_transport;
mod slice;
