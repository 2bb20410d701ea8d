//! The command line: argument definitions, help texts, and the dispatch to the library.
//!
//! Options are validated here, once; the library receives typed values. Errors are printed as one
//! line on stderr, and the exit code comes from their [`ErrorKind`](crate::ErrorKind).

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::{Error, Result};
use crate::source::{Platform, PlatformChoice, Selection};

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
    /// List what an input holds: images, tags, platforms and layers, with sizes.
    #[command(after_help = "Examples:\n  \
        nydus-offline inspect ./oci-in\n  \
        nydus-offline inspect app.tar --json\n  \
        nydus-offline inspect ./oci-in --image latest --platform linux/arm64\n\n\
        Every listed layer is decompressed to measure it, which also verifies its digests;\n\
        --quick skips that.")]
    Inspect(InspectArgs),
}

/// Which image and platforms to take from an input.
#[derive(Debug, clap::Args)]
pub struct SelectArgs {
    /// The image to take, by tag, name or digest; needed when the input holds several.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// The platform to take, as os/arch[/variant]. Default: the only one, or this machine's
    /// when the image has several.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = parse_platform,
          conflicts_with = "all_platforms")]
    pub platform: Option<Platform>,
    /// Take every platform of the image.
    #[arg(long)]
    pub all_platforms: bool,
}

impl SelectArgs {
    /// The selection these options make; `default` applies when neither `--platform` nor
    /// `--all-platforms` is given.
    pub fn selection(&self, default: PlatformChoice) -> Selection {
        let platform = match (&self.platform, self.all_platforms) {
            (Some(p), _) => PlatformChoice::Only(p.clone()),
            (None, true) => PlatformChoice::All,
            (None, false) => default,
        };
        Selection {
            image: self.image.clone(),
            platform,
        }
    }
}

fn parse_platform(s: &str) -> std::result::Result<Platform, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

/// Options of `inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The input: an OCI image layout directory, an oci-archive or a docker save tarball.
    pub input: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Do not decompress layers: faster, but uncompressed sizes are shown only for layers stored
    /// uncompressed, and layer contents are not verified.
    #[arg(long)]
    pub quick: bool,
    #[command(flatten)]
    pub select: SelectArgs,
}

/// Options of `convert`.
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// The input image: an OCI image layout directory, an oci-archive or a docker save tarball.
    pub input: PathBuf,
    /// Where to write the Nydus image as an OCI image layout directory.
    pub output: PathBuf,
    #[command(flatten)]
    pub select: SelectArgs,
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
        Command::Convert(args) => {
            // Resolve and load the input now, so that bad input and selection mistakes are
            // reported as such rather than as a missing feature.
            let source = crate::source::open(&args.input)?;
            crate::source::select(&*source, &args.select.selection(PlatformChoice::Host))?;
            Err(Error::internal(format!(
                "converting {} is not implemented yet in this build",
                args.input.display()
            )))
        }
        Command::Inspect(args) => inspect(&args),
    }
}

/// `inspect`: list every image and platform unless narrowed.
fn inspect(args: &InspectArgs) -> Result<()> {
    let selection = args.select.selection(PlatformChoice::All);
    let report = crate::source::inspect::inspect(&args.input, &selection, args.quick)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        report.write_text(&mut out)
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| Error::io(std::path::Path::new("<stdout>"), e))
}
