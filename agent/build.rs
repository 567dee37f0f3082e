//! Records the target triple, so the agent asks the fleet repository for its own platform's build.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=YILIAN_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
