//! The `nydus-offline` binary: everything happens in the library; this only reports the outcome.

fn main() {
    std::process::exit(nydus_offline::cli::main());
}
