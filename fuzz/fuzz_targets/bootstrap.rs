//! `check`'s RAFS v6 reader on arbitrary bytes: the bytes are a bootstrap, decoded and judged
//! as `check` judges a merged one (super blocks, tables, the whole tree, chunk indexes). Every
//! outcome but a list of problems is a finding: a panic, an abort (an allocation sized by a
//! damaged field), a hang (a directory cycle), or memory beyond `-rss_limit_mb`. Then the same
//! bytes as `inspect` and `unpack` read them ([`bootstrap_reads`]).

#![no_main]

use libfuzzer_sys::fuzz_target;

mod bootstrap_reads;

fuzz_target!(|data: &[u8]| {
    let _ = nydus_offline::check::bootstrap_problems(data.to_vec());
    bootstrap_reads::run(data);
});
