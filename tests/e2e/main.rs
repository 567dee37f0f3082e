//! End-to-end tests in one binary (built once, run one at a time).

mod browser;
mod cartfiles;
mod common;
mod dicomgen;
mod faults;
mod imaging;
mod security_transport;
mod slice;
