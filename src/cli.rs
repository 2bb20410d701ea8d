//! The command line: argument definitions, help texts, and the dispatch to the library.
//!
//! Options are validated here, once; the library receives typed values. Errors are printed as one
//! line on stderr, and the exit code comes from their [`ErrorKind`](crate::ErrorKind).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::{Error, Result};

/// Convert container images to Nydus images, offline.
#[derive(Debug, Parser)]
#[command(name = "nydus-offline", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Convert an image (OCI layout, oci-archive or docker save tarball) into a Nydus image.
    #[command(after_help = "Examples:\n  \
        nydus-offline convert ./oci-in ./oci-out\n  \
        nydus-offline convert app.tar ./oci-out          # docker save tarball\n  \
        skopeo copy oci:./oci-out docker://registry.example/app:nydus")]
    Convert(ConvertArgs),
}

/// Options of `convert`.
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// The input image: an OCI image layout directory, an oci-archive or a docker save tarball.
    pub input: PathBuf,
    /// Where to write the Nydus image as an OCI image layout directory.
    pub output: PathBuf,
}

/// Parse the command line, run the subcommand, and return the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("nydus-offline: error: {err}");
            err.kind().exit_code()
        }
    }
}

/// Run one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Convert(args) => Err(Error::internal(format!(
            "converting {} is not implemented yet in this build",
            args.input.display()
        ))),
    }
}
