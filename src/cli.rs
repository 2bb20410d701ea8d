//! The command line: argument definitions, help texts, and the dispatch to the library.
//!
//! Options are validated here, once; the library receives typed values. Errors are printed as one
//! line on stderr, and the exit code comes from their [`ErrorKind`](crate::ErrorKind).

mod man;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::blob::chunk::{BlobOptions, Compressor, Digester, FsVersion};
use crate::common::error::{Error, Result};
use crate::common::path::ImagePath;
use crate::common::text::count;
use crate::convert::ConvertOptions;
use crate::output::layout::OutputFormat;
use crate::progress::{Display, Mode, NoProgress, PLAIN_DELAY};
use crate::rafs::Prefetch;
use crate::source::{Platform, PlatformChoice, Selection};

/// Convert container images to Nydus images, offline.
#[derive(Debug, Parser)]
#[command(name = "nydus-offline", version, about, long_about = None, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Say more on stderr: -v the fallbacks taken (a layer streamed rather than mapped, an
    /// archive member skipped), -vv every step worth a line.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Prints log records on stderr as `nydus-offline: LEVEL: message`, one line each.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let level = match record.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                log::Level::Info => "info",
                log::Level::Debug | log::Level::Trace => "debug",
            };
            crate::common::error::say(format_args!("nydus-offline: {level}: {}", record.args()));
        }
    }

    fn flush(&self) {}
}

/// Route the library's log records to stderr: warnings by default, none with `--quiet`, more
/// with each `-v`.
fn init_log(verbose: u8, quiet: bool) {
    static LOGGER: StderrLog = StderrLog;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(match (quiet, verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        (false, _) => log::LevelFilter::Debug,
    });
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Convert an image (OCI layout, oci-archive or docker save tarball) into a Nydus image.
    #[command(after_help = "Examples:\n  \
        nydus-offline convert ./oci-in ./oci-out                  # an OCI image layout\n  \
        nydus-offline convert app.tar ./oci-out                   # a docker save tarball\n  \
        nydus-offline convert app.oci.tar ./oci-out               # an oci-archive\n  \
        nydus-offline convert ./oci-in app-nydus.tar              # into an oci-archive (.tar)\n  \
        nydus-offline convert --platform linux/arm64 ./multi ./oci-out   # one platform of several\n  \
        nydus-offline convert --all-platforms ./multi ./oci-out   # every platform, one index\n  \
        nydus-offline check ./oci-out --source ./oci-in           # verify before shipping\n\n\
        Pushing is skopeo's job (--all keeps every platform of an index; latest is the tag\n\
        convert prints, the input's own, or --tag's):\n  \
        skopeo copy --all oci:./oci-out:latest docker://registry.example/app:nydus")]
    Convert(ConvertArgs),
    /// List what an input holds: images, tags, platforms and layers, with sizes.
    #[command(after_help = "Examples:\n  \
        nydus-offline inspect ./oci-in\n  \
        nydus-offline inspect app.tar --json\n  \
        nydus-offline inspect -q app.tar                # read and verify it all, print nothing\n  \
        nydus-offline inspect ./oci-in --image latest --platform linux/arm64\n\n\
        Every listed layer is decompressed to measure it, which also verifies its digests;\n\
        --quick skips that.")]
    Inspect(InspectArgs),
    /// Verify a converted Nydus image: every digest, blob and bootstrap, and with --source
    /// every file against the image it was converted from.
    #[command(after_help = "Examples:\n  \
        nydus-offline check ./oci-out\n  \
        nydus-offline check ./oci-out --source ./oci-in\n  \
        nydus-offline check ./app-nydus.tar                   # an oci-archive output\n  \
        nydus-offline check --json ./oci-out > check.json     # problems and counts as JSON\n  \
        nydus-offline check -q ./oci-out || echo damaged      # the exit code only\n  \
        nydus-offline check ./oci-out --source app.tar && \\\n      \
        skopeo copy --all oci:./oci-out:latest docker://registry.example/app:nydus\n\n\
        Every chunk of every blob is decompressed and compared with its digest; with --source\n\
        the source's layers are read (and their digests verified) to compare each path's\n\
        type, mode, owner, mtime, size, xattrs, link target, device, hardlinks and content.\n\
        Each problem is printed on its own line on stdout; the exit code is 5 if there is any.")]
    Check(CheckArgs),
    /// Turn a Nydus image back into an ordinary OCI image: one tar+gzip layer per Nydus layer,
    /// rebuilt from its bootstrap and blob.
    #[command(after_help = "Examples:\n  \
        nydus-offline unpack ./oci-nydus ./oci-plain\n  \
        nydus-offline unpack --platform linux/arm64 ./oci-nydus ./oci-plain\n  \
        nydus-offline unpack ./oci-nydus plain.tar              # into an oci-archive (.tar)\n\n\
        Every Nydus manifest of the image is unpacked (a merged index's original manifests are\n\
        ordinary images already and are left out); several give one index. Each layer's files\n\
        are read chunk by chunk from the blobs, every chunk checked against its digest;\n\
        whiteouts come back as the layer's .wh. entries. umoci, containerd and Docker unpack\n\
        the result to the tree the Nydus image mounts to.")]
    Unpack(UnpackArgs),
    /// See and trim a layer cache (convert --cache DIR): list its entries, remove the least
    /// recently used.
    #[command(after_help = "Examples:\n  \
        nydus-offline convert --cache /var/cache/nydus --all-images ./mirror ./out\n  \
        nydus-offline cache ls /var/cache/nydus\n  \
        nydus-offline cache prune /var/cache/nydus --max-size 50GiB\n  \
        nydus-offline cache prune /var/cache/nydus --all")]
    Cache(CacheArgs),
    /// Make a chunk dictionary from local images: the chunks that repeat across them, as one
    /// Nydus image that convert --chunk-dict bootstrap=DICT refers to instead of storing them.
    #[command(after_help = "Examples:\n  \
        nydus-offline chunkdict generate ./mirror -o ./dict\n  \
        nydus-offline convert --chunk-dict bootstrap=./dict ./mirror ./mirror-nydus --all-images\n  \
        nydus-offline chunkdict generate app1.tar app2.tar app3.tar -o ./dict --min-images 3\n\n\
        Use the --chunk-size and --digester the conversions will use (the defaults match\n\
        convert's). The dictionary is an ordinary Nydus image: convert copies the one blob it\n\
        uses into each output, so skopeo pushes it with the image.")]
    Chunkdict(ChunkdictArgs),
    /// Print a shell completion script for bash, zsh, fish, elvish or powershell.
    #[command(after_help = "Examples:\n  \
        nydus-offline completions bash > /etc/bash_completion.d/nydus-offline\n  \
        nydus-offline completions zsh > \"${fpath[1]}/_nydus-offline\"\n  \
        nydus-offline completions fish > ~/.config/fish/completions/nydus-offline.fish")]
    Completions(CompletionsArgs),
    /// Print the man page (roff) of nydus-offline or of one of its subcommands.
    #[command(after_help = "Examples:\n  \
        nydus-offline man > nydus-offline.1 && man ./nydus-offline.1\n  \
        nydus-offline man check > nydus-offline-check.1")]
    Man(ManArgs),
}

/// The exit codes, shown under the top-level help; README.md has the same table.
const EXIT_CODES_HELP: &str = "Exit codes:\n  \
    0    success\n  \
    2    usage error (bad option or argument)\n  \
    3    bad input image (missing, malformed, unsupported, or failing digest verification)\n  \
    4    I/O or output error (permission denied, full disk, ...)\n  \
    5    check found problems in the image it checked\n  \
    70   internal error (a bug in nydus-offline)\n  \
    130  interrupted (SIGINT or SIGTERM)";

/// Options of `check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The converted image: the OCI image layout directory or the oci-archive `convert` wrote
    /// (an archive is unpacked into a temporary directory first).
    pub output: PathBuf,
    /// The image it was converted from (OCI layout, oci-archive or docker save tarball): compare
    /// every path and every file's content with it.
    #[arg(long, value_name = "INPUT")]
    pub source: Option<PathBuf>,
    /// The chunk dictionary bootstrap the image was converted with (convert --chunk-dict
    /// bootstrap=PATH, a bare bootstrap): the blobs it names may be missing from the image.
    #[arg(long, value_name = "bootstrap=PATH", value_parser = parse_chunk_dict)]
    pub chunk_dict: Option<PathBuf>,
    /// Print the result as JSON on stdout instead of lines: the output and source checked,
    /// `ok`, every problem, and what was counted.
    #[arg(long)]
    pub json: bool,
    /// Print nothing on stdout (--json still prints the result): the exit code says how it went.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What layers may declare beyond the bytes they store (README: "Limits").
#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Most bytes of holes the sparse files of one image may have together (holes are stored
    /// as zeros), written as bytes or with a unit (16GiB, 1TiB).
    #[arg(long, value_name = "SIZE", default_value = "16GiB", value_parser = parse_size)]
    pub max_sparse_holes: u64,
}

impl LimitArgs {
    /// The limits these options set.
    pub fn limits(&self) -> crate::layer::entries::Limits {
        crate::layer::entries::Limits::new(self.max_sparse_holes)
    }
}

/// Parse a size: decimal bytes, or a number with K/KiB, M/MiB, G/GiB or T/TiB.
/// `--batch-size`: 0, or a power of two from 4 KiB to 16 MiB (checked against --chunk-size
/// once both are known).
fn parse_batch_size(s: &str) -> std::result::Result<u32, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    parse_chunk_size(s).map_err(|e| e.replace("chunk size", "batch size"))
}

/// `--fs-version`: 5 or 6.
fn parse_fs_version(s: &str) -> std::result::Result<FsVersion, String> {
    match s.trim() {
        "5" => Ok(FsVersion::V5),
        "6" => Ok(FsVersion::V6),
        other => Err(format!("RAFS version {other:?}: give 5 or 6")),
    }
}

/// `--chunk-dict`: `bootstrap=PATH`, or a bare PATH (nydus-image reads that as a bootstrap too).
fn parse_chunk_dict(s: &str) -> std::result::Result<PathBuf, String> {
    let path = match s.split_once('=') {
        None => s,
        Some(("bootstrap", path)) => path,
        Some((kind, _)) => {
            return Err(format!(
                "the dictionary kind {kind:?} is not known; give bootstrap=PATH"
            ));
        }
    };
    if path.is_empty() {
        return Err("give bootstrap=PATH".to_string());
    }
    Ok(PathBuf::from(path))
}

pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let shift = match unit.trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "unknown unit '{other}' in size '{s}' (use GiB or TiB)"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("'{s}' is not a size (examples: 17179869184, 16GiB)"))
}

/// Options of `completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Options of `man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// The subcommand whose page to print; the main page when omitted.
    #[arg(value_name = "SUBCOMMAND")]
    pub subcommand: Option<String>,
}

/// Which image and platforms to take from an input.
#[derive(Debug, clap::Args)]
pub struct SelectArgs {
    /// The image to take, by tag, name or digest; needed when the input holds several.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// The platform to take, as os/arch[/variant] in any case (read as lowercase, as containerd
    /// does); several separated by commas (or the option repeated) take each of them. Default: the only one, or this machine's when the image has
    /// several.
    #[arg(long, value_name = "OS/ARCH[/VARIANT],...", value_parser = parse_platform,
          value_delimiter = ',', conflicts_with = "all_platforms")]
    pub platform: Vec<Platform>,
    /// Take every platform of the image.
    #[arg(long)]
    pub all_platforms: bool,
}

impl SelectArgs {
    /// The selection these options make; `default` applies when neither `--platform` nor
    /// `--all-platforms` is given.
    pub fn selection(&self, default: PlatformChoice) -> Selection {
        let platform = match (self.platform.as_slice(), self.all_platforms) {
            ([one], _) => PlatformChoice::Only(one.clone()),
            ([], true) => PlatformChoice::All,
            ([], false) => default,
            (many, _) => PlatformChoice::List(many.to_vec()),
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
    /// Print nothing on stdout (--json still prints the listing): the exit code says whether the
    /// input could be read and, without --quick, its layers verified.
    #[arg(long, short = 'q')]
    pub quiet: bool,
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
    /// The input image(s), then the output. An input is an OCI image layout directory, an
    /// oci-archive or a docker save tarball; several inputs convert every image of each (as
    /// --all-images) into one output. The output is an OCI image layout directory (an existing
    /// layout gets the images added), or one tar file (an oci-archive) when it ends in .tar or
    /// with --output-format oci-archive. Anything else that exists is refused unless --force.
    /// The output appears only once it is complete.
    #[arg(value_name = "INPUT... OUTPUT", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Read the inputs from FILE, one path per line (blank lines and lines starting with # are
    /// skipped; - reads standard input); then only OUTPUT is given on the command line.
    #[arg(long, value_name = "FILE")]
    pub from_list: Option<PathBuf>,
    /// What nydusd prefetches at mount (the bootstraps' prefetch table): FILE (- for stdin)
    /// lists absolute paths, one per line (files or directories; blank lines and # comments
    /// skipped), as nydus-image reads them; none writes no table. Default: / (everything), as
    /// nydusify does.
    #[arg(long, value_name = "FILE|-|none")]
    pub prefetch_patterns: Option<PathBuf>,
    /// Find each image's startup files offline and prefetch them, laid out first in each
    /// layer's blob: the program its Entrypoint and Cmd run (through PATH and WorkingDir), its
    /// #! interpreters, ELF interpreter and shared libraries as the dynamic loader finds them.
    /// Reads every layer once more. For images that run one program; see
    /// --print-prefetch-list to review the list.
    #[arg(long, conflicts_with = "prefetch_patterns")]
    pub prefetch_entrypoint: bool,
    /// Print the list --prefetch-entrypoint would derive for each image, and write nothing: every
    /// path given is an INPUT. Edit it and give it back with --prefetch-patterns FILE.
    #[arg(long, conflicts_with_all = ["prefetch_patterns", "json", "report", "digestfile"])]
    pub print_prefetch_list: bool,
    /// Convert only share I of N of the images (by digest; 0 <= I < N), so that N runs, on one
    /// machine or many, convert a mirror together into one output layout (they take turns to
    /// put their images in place).
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<(u64, u64)>,
    /// Keep each converted layer in the layer cache DIR (created if need be), and take a layer
    /// from there instead of converting it when the same layer, over the same lower layers, was
    /// converted with the same options before: the output is the same, byte for byte. Runs may
    /// share DIR at once; see `nydus-offline cache`.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Once done, evict the least recently used entries of --cache until it holds at most SIZE
    /// (bytes, or with a unit: 50GiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "cache")]
    pub cache_max_size: Option<u64>,
    /// Store only the chunks a chunk dictionary lacks: chunks the dictionary's blobs hold are
    /// referred to instead (nydus-image/nydusify spelling: bootstrap=PATH). PATH is a RAFS v6
    /// bootstrap (nydus-image's, or a Nydus image's image.boot; the blobs it names must then
    /// reach nydusd another way), or a Nydus image (OCI layout or oci-archive, e.g. this tool's
    /// output for the base image), whose blobs the output then holds. Use for images built on a
    /// common base that is already converted and pushed.
    #[arg(long, value_name = "bootstrap=PATH", value_parser = parse_chunk_dict)]
    pub chunk_dict: Option<PathBuf>,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Size of the chunks files are cut into: a power of two from 4 KiB to 16 MiB, written as
    /// bytes (1048576), hex (0x100000) or with a unit (1MiB, 64KiB).
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_chunk_size)]
    pub chunk_size: u32,
    /// RAFS version of the bootstraps: 6 (EROFS-compatible, for nydusd and the kernel's EROFS
    /// fscache mode) or 5 (nydusd only, for fleets whose nydus-snapshotter still runs v5
    /// images). Version 5 takes neither --batch-size, --encrypt nor --chunk-dict.
    #[arg(long, value_name = "VERSION", default_value = "6", value_parser = parse_fs_version)]
    pub fs_version: FsVersion,
    /// Compress the chunks of small files (one chunk, under half of SIZE) together, in frames
    /// of up to SIZE bytes, as nydus-image --batch-size does: smaller blobs and fewer requests
    /// for images of many small files. A power of two from 4 KiB to --chunk-size, or 0 (off).
    /// Needs nydusd 2.3 or newer to read (2.2 refuses the image).
    #[arg(long, value_name = "SIZE", default_value = "0", value_parser = parse_batch_size)]
    pub batch_size: u32,
    /// Encrypt every blob's chunk data (AES-128-XTS, as nydus-image --encrypt), so that a blob
    /// alone reveals nothing; the key of each blob is in the bootstrap, so the image as a whole
    /// does not keep its content from whoever can read its bootstrap layer. Needs nydusd 2.3 or
    /// newer (2.2 refuses the image).
    #[arg(long, conflicts_with = "chunk_dict")]
    pub encrypt: bool,
    /// How each chunk is compressed; a chunk that does not shrink is stored as it is.
    #[arg(long, value_enum, default_value_t = CompressorArg::Zstd)]
    pub compressor: CompressorArg,
    /// The digest identifying chunks, used to store repeated content once.
    #[arg(long, value_enum, default_value_t = DigesterArg::Blake3)]
    pub digester: DigesterArg,
    /// Threads that digest and compress chunks (0: one per CPU; at most 1024). The output is
    /// the same for any value.
    #[arg(long, short = 'j', value_name = "N", default_value_t = 0, value_parser = parse_jobs)]
    pub jobs: usize,
    /// Replace what is there, only once the new image is complete: on an OCI layout, point a
    /// tag it has already at the new image (without --force that is refused, naming the tag and
    /// what it names); on a directory that is not a layout, or on a file, replace it whole.
    /// Never the input: an output that is, lies inside or holds the input is always refused.
    #[arg(long)]
    pub force: bool,
    /// Tag of the image in the output's index.json. Default: the tag of the input image's name
    /// (latest for an OCI layout's latest, for app:latest and for docker.io/library/app:latest),
    /// else latest.
    #[arg(long, value_name = "NAME")]
    pub tag: Option<String>,
    /// Convert every image of the input (every tag of a layout, every image of a docker save
    /// tarball) into one output, each under its names as they are (a layout's tags, a docker
    /// save tarball's full names); layers shared between images are converted and stored once.
    #[arg(long, conflicts_with_all = ["image", "tag", "digestfile"])]
    pub all_images: bool,
    /// Write an OCI image layout directory, or an oci-archive (one tar file of the layout).
    /// Default: oci-archive when OUTPUT ends in .tar and is not a directory, else oci.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub output_format: Option<OutputFormatArg>,
    /// Also keep the original images, each with an empty layer prepended, and list them before
    /// the Nydus manifests in one index, as nydusify 2.4 --merge-platform does.
    #[arg(long)]
    pub merge_platform: bool,
    /// Name the original manifest as the `subject` of each Nydus manifest, as nydusify
    /// --with-referrer does.
    #[arg(long)]
    pub with_referrer: bool,
    /// Print nothing but errors: no progress and no summary (--json and --report still write
    /// the report).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Progress on stderr. auto: bars on a terminal; otherwise plain lines, once the run has
    /// taken 2 seconds. plain: plain lines from the start. none: nothing.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    /// Print the report as JSON on stdout instead of the summary: digests of the index and of
    /// each manifest, and per layer its source and blob digests, sizes, chunks, dedup hits and
    /// time; totals and peak memory.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write the digest of the manifest or index the tag names to FILE (as skopeo copy
    /// --digestfile does: `sha256:...`, no newline).
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// `--progress` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressArg {
    Auto,
    Plain,
    None,
}

/// `--output-format` values, in skopeo's transport spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormatArg {
    /// An OCI image layout directory.
    #[value(name = "oci")]
    OciDir,
    /// One tar file holding the layout.
    #[value(name = "oci-archive")]
    OciArchive,
}

/// `--compressor` values, in nydus-image's spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressorArg {
    None,
    #[value(name = "lz4_block")]
    Lz4Block,
    Zstd,
}

/// `--digester` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DigesterArg {
    Blake3,
    Sha256,
}

/// The most worker threads `--jobs` may ask for: far more than any machine has cores, and few
/// enough that their stacks always fit in memory (100,000 threads did not).
pub const MAX_JOBS: usize = 1024;

fn parse_jobs(s: &str) -> std::result::Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of threads"))?;
    if n > MAX_JOBS {
        return Err(format!("{n} threads is more than the {MAX_JOBS} allowed"));
    }
    Ok(n)
}

/// Parse a chunk size: decimal bytes, `0x` hex, or a number with K/KiB/M/MiB; a power of two
/// between 4 KiB and 16 MiB.
pub fn parse_chunk_size(s: &str) -> std::result::Result<u32, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (number, unit) = match lower.find(|c: char| c.is_ascii_alphabetic() && c != 'x') {
        Some(i) if !lower.starts_with("0x") => (&lower[..i], &lower[i..]),
        _ => (lower.as_str(), ""),
    };
    let multiplier: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        other => {
            return Err(format!(
                "unknown unit '{other}' in chunk size '{s}' (use KiB or MiB)"
            ));
        }
    };
    let number = number.trim();
    let value = match number.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => number.parse::<u64>(),
    }
    .map_err(|_| format!("'{s}' is not a size (examples: 1048576, 0x100000, 1MiB)"))?;
    let bytes = value.saturating_mul(multiplier);
    if !bytes.is_power_of_two() || !(4096..=16 << 20).contains(&bytes) {
        return Err(format!(
            "chunk size {bytes} is not a power of two between 4 KiB and 16 MiB"
        ));
    }
    Ok(bytes as u32)
}

/// Parse the command line, run the subcommand, and return the process exit code.
///
/// A panic is a bug like any broken invariant: it is reported and exits with the internal-error
/// code (70), not Rust's 101, so that scripts can rely on the documented codes.
/// `NYDUS_OFFLINE_INJECT_PANIC=1` panics on purpose, for the test of that code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let outcome = std::panic::catch_unwind(|| {
        if std::env::var_os("NYDUS_OFFLINE_INJECT_PANIC").is_some() {
            panic!("NYDUS_OFFLINE_INJECT_PANIC is set");
        }
        run(cli)
    })
    .unwrap_or_else(|_| {
        Err(Error::internal(
            "internal error (a bug in nydus-offline; the panic message is above): please report it",
        ))
    });
    match outcome {
        Ok(()) => 0,
        Err(err) => {
            crate::common::error::say(format_args!("nydus-offline: error: {err}"));
            err.kind().exit_code()
        }
    }
}

/// Run one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let quiet = match &cli.command {
        Command::Convert(args) => args.quiet,
        Command::Check(args) => args.quiet,
        Command::Inspect(args) => args.quiet,
        Command::Unpack(args) => args.quiet,
        Command::Completions(_) | Command::Man(_) | Command::Cache(_) => false,
        Command::Chunkdict(ChunkdictArgs {
            command: ChunkdictCommand::Generate(args),
        }) => args.quiet,
    };
    init_log(cli.verbose, quiet);
    match cli.command {
        Command::Convert(args) => convert(&args),
        Command::Inspect(args) => inspect(&args),
        Command::Check(args) => check(&args),
        Command::Unpack(args) => unpack(&args),
        Command::Cache(args) => cache(&args),
        Command::Chunkdict(ChunkdictArgs {
            command: ChunkdictCommand::Generate(args),
        }) => chunkdict_generate(&args),
        Command::Completions(args) => completions(&args),
        Command::Man(args) => man(&args),
    }
}

/// What `check --json` prints.
#[derive(serde::Serialize)]
struct CheckResult<'a> {
    /// OUT and `--source`, as given.
    output: String,
    source: Option<String>,
    /// Whether no problem was found (the exit code is 5 otherwise).
    ok: bool,
    /// One line per problem: "where: what is wrong", at most `check::MAX_PROBLEMS` of them.
    problems: &'a [String],
    /// Problems found beyond those listed: counted only.
    unlisted: usize,
    /// Nydus manifests, data blobs, chunks and bootstraps checked, paths compared with the source.
    manifests: usize,
    blobs: usize,
    chunks: u64,
    bootstraps: usize,
    compared: usize,
}

/// `check`: every problem on its own line on stdout, then a summary; any problem makes the
/// result an [`ErrorKind::CheckFailed`](crate::ErrorKind::CheckFailed) error.
fn check(args: &CheckArgs) -> Result<()> {
    let options = crate::check::CheckOptions {
        source: args.source.clone(),
        limits: args.limits.limits(),
        external_blobs: match &args.chunk_dict {
            Some(path) => crate::check::dict_blob_ids(path)?,
            None => Vec::new(),
        },
    };
    let report = crate::check::check(&args.output, &options)?;
    let text = if args.json {
        let result = CheckResult {
            output: args.output.display().to_string(),
            source: args.source.as_ref().map(|s| s.display().to_string()),
            ok: report.is_ok(),
            problems: &report.problems,
            unlisted: report.unlisted,
            manifests: report.manifests,
            blobs: report.blobs,
            chunks: report.chunks,
            bootstraps: report.bootstraps,
            compared: report.compared,
        };
        let mut json = serde_json::to_string_pretty(&result)
            .map_err(|e| Error::internal(format!("the check result as JSON: {e}")))?;
        json.push('\n');
        json
    } else if args.quiet {
        String::new()
    } else {
        let mut text = String::new();
        for problem in &report.problems {
            text.push_str(&format!("problem: {problem}\n"));
        }
        if report.unlisted > 0 {
            text.push_str(&format!(
                "{} not listed (at most {} are)\n",
                count(report.unlisted as u64, "more problem"),
                crate::check::MAX_PROBLEMS
            ));
        }
        let compared = match &args.source {
            Some(source) => format!(
                ", {} compared with {}",
                count(report.compared as u64, "path"),
                source.display()
            ),
            None => String::new(),
        };
        text.push_str(&format!(
            "{}: {}, {}, {} checked, {}{compared}\n",
            args.output.display(),
            count(report.manifests as u64, "Nydus manifest"),
            count(report.blobs as u64, "blob"),
            count(report.chunks, "chunk"),
            count(report.bootstraps as u64, "bootstrap"),
        ));
        text
    };
    // The verdict is the exit code, whether or not the reader of stdout stayed for it all.
    write_stdout(text.as_bytes())?;
    if report.is_ok() {
        Ok(())
    } else {
        Err(Error::new(
            crate::ErrorKind::CheckFailed,
            format!(
                "{}: check found {}",
                args.output.display(),
                count(report.count() as u64, "problem"),
            ),
        ))
    }
}

/// `completions`: the script clap_complete generates from these very definitions.
fn completions(args: &CompletionsArgs) -> Result<()> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "nydus-offline", &mut out);
    write_stdout(&out)
}

/// `man`: the roff page rendered from these very definitions ([`man::render`]).
fn man(args: &ManArgs) -> Result<()> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    // Built, so that each subcommand has its help flag and the global options.
    cmd.build();
    let page = match &args.subcommand {
        None => cmd,
        Some(name) => {
            let sub = cmd.find_subcommand(name).cloned().ok_or_else(|| {
                let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
                Error::usage(format!(
                    "no subcommand '{name}'; there are: {}",
                    names.join(", ")
                ))
            })?;
            // clap names are `&'static str` without its "string" feature; one leak per run.
            let full: &'static str =
                Box::leak(format!("nydus-offline-{}", sub.get_name()).into_boxed_str());
            sub.name(full)
        }
    };
    let mut out = Vec::new();
    man::render(page, &mut out)
        .map_err(|e| Error::internal(format!("rendering the man page: {e}")))?;
    write_stdout(&out)
}

/// Write bytes to stdout.
///
/// A reader that went away (`check ... | head`) ends the output quietly: what it did not read
/// it did not want, and the command's exit code still says how it went.
fn write_stdout(bytes: &[u8]) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io(std::path::Path::new("<stdout>"), e))
        }
        _ => Ok(()),
    }
}

/// The form of `convert`'s output: `--output-format`'s, else an oci-archive for an OUTPUT that
/// ends in `.tar` and is not a directory (`convert IN app-nydus.tar` made a directory of that
/// name), else a layout directory.
fn output_format(args: &ConvertArgs) -> OutputFormat {
    output_format_of(args.output(), args.output_format)
}

impl ConvertArgs {
    /// OUTPUT: the last path.
    pub fn output(&self) -> &std::path::Path {
        self.paths.last().expect("clap requires one path")
    }

    /// The inputs: the paths before OUTPUT, or those `--from-list` names.
    pub fn inputs(&self) -> Result<Vec<PathBuf>> {
        let given = &self.paths[..self.paths.len() - 1];
        let Some(list) = &self.from_list else {
            if given.is_empty() {
                return Err(Error::usage(
                    "convert needs an INPUT and an OUTPUT (or --from-list FILE and an OUTPUT)",
                ));
            }
            return Ok(given.to_vec());
        };
        if !given.is_empty() {
            return Err(Error::usage(
                "with --from-list, give only the OUTPUT on the command line",
            ));
        }
        let text = if list.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
                .map_err(|e| Error::io(std::path::Path::new("standard input"), e))?
        } else {
            std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?
        };
        let inputs: Vec<PathBuf> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(PathBuf::from)
            .collect();
        if inputs.is_empty() {
            return Err(Error::usage(format!(
                "--from-list {}: names no input",
                list.display()
            )));
        }
        Ok(inputs)
    }
}

/// `--prefetch-patterns`: the table's paths from FILE (or stdin), none, or the default root.
fn prefetch_patterns(arg: Option<&std::path::Path>) -> Result<Prefetch> {
    let Some(arg) = arg else {
        return Ok(Prefetch::Root);
    };
    if arg.as_os_str() == "none" {
        return Ok(Prefetch::None);
    }
    let what = format!("--prefetch-patterns {}", arg.display());
    let text = if arg.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut buf)
            .map_err(|e| Error::io(std::path::Path::new("standard input"), e))?;
        buf
    } else {
        std::fs::read(arg).map_err(|e| Error::io(arg, e))?
    };
    let mut paths = Vec::new();
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        if !line.starts_with(b"/") {
            return Err(Error::usage(format!(
                "{what}: line {}: {} is not an absolute path",
                n + 1,
                line.escape_ascii()
            )));
        }
        let path = ImagePath::parse(line).map_err(|e| {
            Error::usage(format!(
                "{what}: line {}: {}: {e}",
                n + 1,
                line.escape_ascii()
            ))
        })?;
        if path.is_root() {
            return Ok(Prefetch::Root);
        }
        paths.push(path);
    }
    Ok(Prefetch::Paths(paths))
}

/// `--shard I/N`: 0 <= I < N.
fn parse_shard(s: &str) -> std::result::Result<(u64, u64), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not I/N (for example 0/4)"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| format!("{s:?} is not I/N"))
    };
    let (i, n) = (parse(i)?, parse(n)?);
    if n == 0 || i >= n {
        return Err(format!("{s:?}: I must be below N, and N at least 1"));
    }
    Ok((i, n))
}

/// [`output_format`] of any command that writes an image (`convert`, `unpack`).
fn output_format_of(output: &std::path::Path, asked: Option<OutputFormatArg>) -> OutputFormat {
    match asked {
        Some(OutputFormatArg::OciDir) => OutputFormat::Layout,
        Some(OutputFormatArg::OciArchive) => OutputFormat::Archive,
        None => {
            let tar = output
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("tar"));
            if tar && !output.is_dir() {
                log::info!(
                    "{}: writing an oci-archive, as its name ends in .tar (--output-format oci \
                     writes a directory)",
                    output.display()
                );
                OutputFormat::Archive
            } else {
                OutputFormat::Layout
            }
        }
    }
}

/// `convert --print-prefetch-list`: every path an input; each image's list on stdout, headed
/// by a comment line naming it (a list file skips comments).
fn print_prefetch_lists(args: &ConvertArgs, options: &ConvertOptions) -> Result<()> {
    if args.from_list.is_some() {
        return Err(Error::usage(
            "--print-prefetch-list reads the inputs on the command line, not --from-list",
        ));
    }
    let mut text = Vec::new();
    for (image, paths) in crate::convert::prefetch_lists(&args.paths, options)? {
        text.extend_from_slice(format!("# {image}\n").as_bytes());
        for path in paths {
            let path = path.to_bytes();
            // A list holds one path a line: a name with a newline cannot be written in one.
            if path.contains(&b'\n') {
                log::warn!("--print-prefetch-list: a path with a newline is left out");
                continue;
            }
            text.extend_from_slice(&path);
            text.push(b'\n');
        }
    }
    write_stdout(&text)
}

/// The blob options of `--chunk-size`, `--compressor`, `--digester`.
fn blob_options(chunk_size: u32, compressor: CompressorArg, digester: DigesterArg) -> BlobOptions {
    BlobOptions {
        chunk_size,
        compressor: match compressor {
            CompressorArg::None => Compressor::None,
            CompressorArg::Lz4Block => Compressor::Lz4Block,
            CompressorArg::Zstd => Compressor::Zstd,
        },
        digester: match digester {
            DigesterArg::Blake3 => Digester::Blake3,
            DigesterArg::Sha256 => Digester::Sha256,
        },
        ..BlobOptions::default()
    }
}

/// `chunkdict generate`: the summary goes to stdout.
fn chunkdict_generate(args: &ChunkdictGenerateArgs) -> Result<()> {
    crate::output::interrupt::install()?;
    let options = crate::chunkdict::ChunkdictOptions {
        selection: Selection {
            image: None,
            platform: match &args.platform {
                Some(p) => PlatformChoice::Only(p.clone()),
                None => PlatformChoice::Host,
            },
        },
        blob: blob_options(args.chunk_size, args.compressor, args.digester),
        min_images: args.min_images,
        limits: args.limits.limits(),
        tag: args.tag.clone(),
        progress: !args.quiet && !args.json,
    };
    let summary = crate::chunkdict::generate(&args.inputs, &args.output, &options)?;
    if args.json {
        let mut json = serde_json::to_string_pretty(&summary)
            .map_err(|e| Error::internal(format!("the summary as JSON: {e}")))?;
        json.push('\n');
        return write_stdout(json.as_bytes());
    }
    if args.quiet {
        return Ok(());
    }
    write_stdout(
        format!(
            "{}: {} repeated in at least {} of {} images ({} of {} distinct chunks read), tag {}, {}\n",
            args.output.display(),
            count(summary.dict_chunks, "chunk"),
            args.min_images,
            summary.images,
            summary.dict_chunks,
            summary.distinct_chunks,
            summary.tag,
            summary.digest,
        )
        .as_bytes(),
    )
}

/// The options RAFS v5 has no place for, refused as nydus-image refuses them.
fn refuse_with_v5(args: &ConvertArgs) -> Result<()> {
    if args.fs_version != FsVersion::V5 {
        return Ok(());
    }
    let refused = if args.batch_size != 0 {
        "--batch-size (batch chunks are described by the ci table of RAFS v6 blobs)"
    } else if args.encrypt {
        "--encrypt (keys are kept in the RAFS v6 blob table)"
    } else if args.chunk_dict.is_some() {
        "--chunk-dict (a v5 image needs a v5 dictionary, and this tool reads v6 dictionaries only)"
    } else {
        return Ok(());
    };
    Err(Error::usage(format!(
        "--fs-version 5 does not go with {refused}; use --fs-version 6"
    )))
}

/// `convert`: the options become [`ConvertOptions`]; the summary goes to stdout.
fn convert(args: &ConvertArgs) -> Result<()> {
    let options = ConvertOptions {
        selection: args.select.selection(PlatformChoice::Host),
        blob: BlobOptions {
            fs_version: args.fs_version,
            jobs: args.jobs,
            batch_size: args.batch_size,
            encrypt: args.encrypt,
            ..blob_options(args.chunk_size, args.compressor, args.digester)
        },
        force: args.force,
        tag: args.tag.clone(),
        format: output_format(args),
        merge_platform: args.merge_platform,
        with_referrer: args.with_referrer,
        all_images: args.all_images,
        shard: args.shard,
        cache: args.cache.clone(),
        cache_max_size: args.cache_max_size,
        chunk_dict: args.chunk_dict.clone(),
        prefetch: prefetch_patterns(args.prefetch_patterns.as_deref())?,
        prefetch_entrypoint: args.prefetch_entrypoint,
        limits: args.limits.limits(),
    };
    if args.batch_size > args.chunk_size {
        return Err(Error::usage(format!(
            "--batch-size {:#x} is larger than --chunk-size {:#x}; a batch holds chunks",
            args.batch_size, args.chunk_size
        )));
    }
    refuse_with_v5(args)?;
    if args.print_prefetch_list {
        return print_prefetch_lists(args, &options);
    }
    let inputs = args.inputs()?;
    if args.shard.is_some() && !args.all_images && inputs.len() < 2 {
        return Err(Error::usage(
            "--shard divides many images: give it with --all-images, several inputs or --from-list",
        ));
    }
    for (file, what) in [
        (&args.report, "the --report file"),
        (&args.digestfile, "the --digestfile file"),
    ] {
        if let Some(file) = file {
            crate::output::layout::refuse_side_file(&inputs, args.output(), file, what)?;
        }
    }
    if args.digestfile.is_some() && inputs.len() > 1 {
        return Err(Error::usage(
            "--digestfile names one image's digest: give one input (the report lists them all)",
        ));
    }
    crate::output::interrupt::install()?;
    let mode = match (args.quiet, args.progress) {
        (true, _) | (false, ProgressArg::None) => None,
        (false, ProgressArg::Plain) => Some(Mode::Plain {
            after: Duration::ZERO,
        }),
        (false, ProgressArg::Auto) if std::io::stderr().is_terminal() => Some(Mode::Bars),
        (false, ProgressArg::Auto) => Some(Mode::Plain { after: PLAIN_DELAY }),
    };
    let summary = match mode {
        Some(mode) => {
            let display = Display::new(mode);
            // Dropped before any error is printed: the progress thread has stopped by then.
            crate::convert::convert_many(&inputs, args.output(), &options, &display)?
        }
        None => crate::convert::convert_many(&inputs, args.output(), &options, &NoProgress)?,
    };
    let json = || {
        serde_json::to_string_pretty(&summary)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|e| Error::internal(format!("the report as JSON: {e}")))
    };
    if let Some(path) = &args.report {
        std::fs::write(path, json()?).map_err(|e| Error::io(path, e))?;
    }
    if let Some(path) = &args.digestfile {
        std::fs::write(path, &summary.digest).map_err(|e| Error::io(path, e))?;
    }
    if args.json {
        return write_stdout(json()?.as_bytes());
    }
    if args.quiet {
        return Ok(());
    }
    let mut text = String::new();
    for p in &summary.platforms {
        let shared = if p.shared_layers > 0 {
            format!(" ({} shared with an earlier platform)", p.shared_layers)
        } else {
            String::new()
        };
        let chunks: u64 = p.layers.iter().map(|l| l.blob.chunks).sum();
        let hits = p
            .layers
            .iter()
            .filter(|l| l.cache == Some(crate::report::CacheUse::Hit))
            .count();
        let cached = match (&args.cache, hits) {
            (None, _) => String::new(),
            (Some(_), 0) => " (none from the cache)".to_string(),
            (Some(_), n) => format!(" ({n} from the cache)"),
        };
        text += &format!(
            "{}: {}{cached}{shared}, {}, manifest {}\n",
            p.platform,
            count(p.layers.len() as u64, "layer"),
            count(chunks, "chunk"),
            p.manifest.digest
        );
    }
    let output = args.output().display();
    if summary.platforms.is_empty() {
        text += &format!("{output}: nothing to convert in this shard; nothing written\n");
    } else if summary.images.is_empty() {
        text += &format!("{output}: tag {}, {}\n", summary.tag, summary.digest);
    }
    for image in &summary.images {
        for tag in &image.tags {
            text += &format!("{output}: tag {tag}, {}\n", image.digest);
        }
    }
    write_stdout(text.as_bytes())
}

/// Options of `chunkdict`.
#[derive(Debug, clap::Args)]
pub struct ChunkdictArgs {
    #[command(subcommand)]
    pub command: ChunkdictCommand,
}

/// What `chunkdict` does.
#[derive(Debug, Subcommand)]
pub enum ChunkdictCommand {
    /// Read every image of the inputs, and write the chunks found in at least --min-images of
    /// them, once each, as a Nydus image.
    Generate(ChunkdictGenerateArgs),
}

/// Options of `chunkdict generate`.
#[derive(Debug, clap::Args)]
pub struct ChunkdictGenerateArgs {
    /// The images: OCI layouts, oci-archives, docker save tarballs (every image of each; the
    /// same image twice counts once).
    #[arg(value_name = "INPUT", required = true)]
    pub inputs: Vec<PathBuf>,
    /// Where the dictionary goes: an OCI layout directory, or an oci-archive for a path ending
    /// in .tar. Never an input; an existing layout gets the image added.
    #[arg(short = 'o', long, value_name = "DICT")]
    pub output: PathBuf,
    /// In how many images a chunk must be found to enter the dictionary.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub min_images: usize,
    /// The dictionary image's tag.
    #[arg(long, value_name = "NAME", default_value = "chunkdict")]
    pub tag: String,
    /// Which platform of multi-platform images (a dictionary serves one platform); default:
    /// the only one, else this machine's.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = parse_platform)]
    pub platform: Option<Platform>,
    /// The chunk size of the conversions that will use the dictionary.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_chunk_size)]
    pub chunk_size: u32,
    /// The compressor of the conversions that will use the dictionary.
    #[arg(long, value_enum, default_value_t = CompressorArg::Zstd)]
    pub compressor: CompressorArg,
    /// The digester of the conversions that will use the dictionary.
    #[arg(long, value_enum, default_value_t = DigesterArg::Blake3)]
    pub digester: DigesterArg,
    /// Print what was found and written as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Options of `cache`.
#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

/// What `cache` does.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the entries, least recently used first: key, the layer's place in its chain, its
    /// diff id, bytes on disk, last use.
    Ls {
        /// The cache directory (convert --cache DIR).
        dir: PathBuf,
        /// Print JSON: one object per entry (key, layer: 1 for a bottom layer, diff_id, blob,
        /// size, last_used in seconds since the epoch, and problem for an entry that cannot be
        /// used).
        #[arg(long)]
        json: bool,
    },
    /// Remove entries, least recently used first, and what runs that died left behind.
    Prune {
        /// The cache directory.
        dir: PathBuf,
        /// Keep at most SIZE bytes of entries (or with a unit: 50GiB).
        #[arg(long, value_name = "SIZE", value_parser = parse_size,
              required_unless_present = "all", conflicts_with = "all")]
        max_size: Option<u64>,
        /// Remove every entry.
        #[arg(long)]
        all: bool,
        /// Print what was removed and kept as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `cache ls` and `cache prune`.
fn cache(args: &CacheArgs) -> Result<()> {
    use indicatif::HumanBytes;
    let mut text = String::new();
    match &args.command {
        CacheCommand::Ls { dir, json } => {
            let entries = crate::cache::LayerCache::open_existing(dir)?.list()?;
            if *json {
                text = pretty(&entries)?;
            } else {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                text += "KEY           LAYER  DIFF ID              SIZE        LAST USED\n";
                for e in &entries {
                    let diff_id = e.diff_id.as_deref().unwrap_or("-");
                    text += &format!(
                        "{:<12}  {:<5}  {:<19}  {:<10}  {}{}\n",
                        &e.key[..12],
                        e.layer.map_or("-".to_string(), |l| l.to_string()),
                        &diff_id[..diff_id.len().min(19)],
                        HumanBytes(e.size).to_string(),
                        ago(now.saturating_sub(e.last_used)),
                        e.problem
                            .as_ref()
                            .map_or(String::new(), |p| format!("  (unusable: {p})")),
                    );
                }
                let total: u64 = entries.iter().map(|e| e.size).sum();
                text += &format!(
                    "{}: {}, {}\n",
                    dir.display(),
                    entry_count(entries.len()),
                    HumanBytes(total)
                );
            }
        }
        CacheCommand::Prune {
            dir,
            max_size,
            json,
            ..
        } => {
            let pruned = crate::cache::LayerCache::open_existing(dir)?.prune(*max_size)?;
            if *json {
                text = pretty(&pruned)?;
            } else {
                text = format!(
                    "{}: removed {} ({}), kept {} ({})\n",
                    dir.display(),
                    entry_count(pruned.removed),
                    HumanBytes(pruned.removed_bytes),
                    entry_count(pruned.kept),
                    HumanBytes(pruned.kept_bytes),
                );
            }
        }
    }
    write_stdout(text.as_bytes())
}

/// `value` as pretty JSON, with a final newline.
fn pretty(value: &impl serde::Serialize) -> Result<String> {
    let mut json = serde_json::to_string_pretty(value)
        .map_err(|e| Error::internal(format!("encoding JSON: {e}")))?;
    json.push('\n');
    Ok(json)
}

/// "1 entry", "2 entries".
fn entry_count(n: usize) -> String {
    if n == 1 {
        "1 entry".to_string()
    } else {
        format!("{n} entries")
    }
}

/// `seconds` ago, in the largest unit that fits.
fn ago(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3600 => format!("{}m ago", seconds / 60),
        3600..86400 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86400),
    }
}

/// `inspect`: list every image and platform unless narrowed.
fn inspect(args: &InspectArgs) -> Result<()> {
    let selection = args.select.selection(PlatformChoice::All);
    let report = crate::inspect::inspect(&args.input, &selection, args.quick)?;
    let mut out = Vec::new();
    if args.quiet && !args.json {
        return Ok(());
    }
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)
            .map_err(|e| Error::internal(format!("encoding the inspect report: {e}")))?;
        out.push(b'\n');
    } else {
        report
            .write_text(&mut out)
            .map_err(|e| Error::internal(format!("formatting the inspect report: {e}")))?;
    }
    write_stdout(&out)
}

#[cfg(test)]
mod tests {
    use super::{parse_chunk_size, parse_size};

    #[test]
    fn sizes_in_every_spelling() {
        assert_eq!(parse_size("16GiB"), Ok(16 << 30));
        assert_eq!(parse_size("1 TiB"), Ok(1 << 40));
        assert_eq!(parse_size("123"), Ok(123));
        for bad in ["", "GiB", "1PiB", "99999999999TiB", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chunk_sizes_in_every_spelling() {
        for s in [
            "1048576", "0x100000", "0X100000", "1MiB", "1M", "1024KiB", "1 MiB",
        ] {
            assert_eq!(parse_chunk_size(s), Ok(1 << 20), "{s}");
        }
        assert_eq!(parse_chunk_size("4KiB"), Ok(4096));
        assert_eq!(parse_chunk_size("16MiB"), Ok(16 << 20));
        for bad in ["2KiB", "32MiB", "1000000", "0x", "1GiB", "abc", ""] {
            assert!(parse_chunk_size(bad).is_err(), "{bad}");
        }
    }
}

/// Options of `unpack`.
#[derive(Debug, clap::Args)]
pub struct UnpackArgs {
    /// The Nydus image: an OCI image layout directory or an (uncompressed) oci-archive.
    pub input: PathBuf,
    /// Where to write the OCI image: an OCI image layout directory (an existing layout gets the
    /// image added), or with --output-format oci-archive one tar file. It appears only once
    /// complete.
    pub output: PathBuf,
    /// Which image of the input (a tag, name or digest), when it holds several.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// Only these platforms' Nydus manifests (os/arch[/variant], comma-separated); default all.
    #[arg(long, value_name = "PLATFORM", value_delimiter = ',', value_parser = parse_platform)]
    pub platform: Vec<Platform>,
    /// The tag in the output's index.json (default: the input image's).
    #[arg(long, value_name = "NAME")]
    pub tag: Option<String>,
    /// Write an OCI image layout directory or one oci-archive tar file. Default: oci-archive
    /// when OUTPUT ends in .tar and is not a directory, else oci.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub output_format: Option<OutputFormatArg>,
    /// Replace what is at OUTPUT (never the input), or repoint a tag it has already.
    #[arg(long)]
    pub force: bool,
    /// Threads compressing each layer (default one per CPU; the output is the same).
    #[arg(long, short = 'j', value_name = "N", default_value_t = 0, value_parser = parse_jobs)]
    pub jobs: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors (--json still prints).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// `unpack`: one line per image written (or the JSON summary).
fn unpack(args: &UnpackArgs) -> Result<()> {
    let options = crate::unpack::UnpackOptions {
        image: args.image.clone(),
        platforms: args.platform.clone(),
        tag: args.tag.clone(),
        format: output_format_of(&args.output, args.output_format),
        force: args.force,
        threads: args.jobs,
    };
    let summary = crate::unpack::unpack(&args.input, &args.output, &options)?;
    let mut out = Vec::new();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &summary)
            .map_err(|e| Error::internal(format!("encoding the unpack summary: {e}")))?;
        out.push(b'\n');
    } else if !args.quiet {
        for i in &summary.images {
            let sockets = if i.sockets_skipped > 0 {
                format!(
                    " ({} sockets left out: a tar cannot hold one)",
                    i.sockets_skipped
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "{}: {} layer{} from Nydus manifest {}, manifest {}{sockets}",
                i.platform,
                i.layers,
                if i.layers == 1 { "" } else { "s" },
                i.from,
                i.manifest,
            );
        }
        let _ = writeln!(
            out,
            "{}: tag {}, {}",
            args.output.display(),
            summary.tag,
            summary.digest
        );
    }
    write_stdout(&out)
}
