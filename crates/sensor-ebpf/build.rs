//! Compiles `bpf/process.bpf.c` and `bpf/net.bpf.c` with clang into libbpf skeletons in
//! `OUT_DIR`.
//!
//! Debian ships `clang-19`, not `clang`: it is the default; `CUSTOS_CLANG` overrides it.

use libbpf_cargo::SkeletonBuilder;
use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bpf");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let clang = std::env::var("CUSTOS_CLANG").unwrap_or_else(|_| "clang-19".into());
    for f in [
        "process.bpf.c",
        "process.h",
        "net.bpf.c",
        "net.h",
        "path.h",
        "calls.h",
        "vmlinux_min.h",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    println!("cargo:rerun-if-env-changed=CUSTOS_CLANG");
    for name in ["process", "net"] {
        if let Err(e) = SkeletonBuilder::new()
            .source(root.join(format!("{name}.bpf.c")))
            .clang(&clang)
            .clang_args([format!("-I{}", root.display())])
            .build_and_generate(out.join(format!("{name}.skel.rs")))
        {
            panic!("building bpf/{name}.bpf.c with {clang} failed (install clang-19 and libelf-dev: bash scripts/setup.sh): {e:#}");
        }
    }
}
