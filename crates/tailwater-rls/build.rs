//! Compiles the vendored Envoy RLS v3 protos with protox (pure Rust: no `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/envoy/service/ratelimit/v3/rls.proto",
        "proto/envoy/extensions/common/ratelimit/v3/ratelimit.proto",
        "proto/envoy/config/core/v3/base.proto",
        "proto/envoy/type/v3/ratelimit_unit.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // No `connect` helper: the library does not take tonic's client transport.
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
