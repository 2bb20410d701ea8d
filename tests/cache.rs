//! The layer cache (`convert --cache DIR`, issue 18): a warm run converts nothing and writes
//! the same bytes as a run without a cache; a shared base is a hit and the rest a miss; options
//! change the key; a damaged entry is a miss with a warning; runs share one cache at once;
//! `--cache-max-size` and `cache prune` evict least recently used entries; shards fill one cache
//! that a final `--all-images` run assembles from without converting anything.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::layers::{self, Entry, Tar};
use common::run;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nydus-offline");

/// `convert --json ARGS INPUT OUT`: its report, and its stderr.
fn convert(args: &[&str], input: &Path, out: &Path) -> (Value, String) {
    let output = run(Command::new(BIN)
        .args(["convert", "--json"])
        .args(args)
        .arg(input)
        .arg(out));
    (report_of(&output), stderr_of(&output))
}

fn report_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Each layer's `cache` field, every platform in order.
fn cache_uses(report: &Value) -> Vec<String> {
    report["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["layers"].as_array().unwrap())
        .map(|l| l["cache"].as_str().unwrap_or("none").to_string())
        .collect()
}

/// `--cache DIR`, as arguments.
fn cache_arg(dir: &Path) -> Vec<String> {
    vec!["--cache".into(), dir.display().to_string()]
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `cache ls --json DIR`.
fn entries(cache: &Path) -> Vec<Value> {
    let out = run(Command::new(BIN).args(["cache", "ls", "--json"]).arg(cache));
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The entry directory of the cache entry with this diff id.
fn entry_of(cache: &Path, diff_id: &str) -> PathBuf {
    let all = entries(cache);
    let entry = all
        .iter()
        .find(|e| e["diff_id"] == diff_id)
        .unwrap_or_else(|| panic!("no entry for {diff_id}: {all:#?}"));
    cache.join("entries").join(entry["key"].as_str().unwrap())
}

/// Two single-image layouts over one base layer (tags `one` and `two`).
fn related_images(scratch: &Path) -> (PathBuf, PathBuf) {
    let base = Tar::new()
        .add(Entry::dir("etc"))
        .add(Entry::file("etc/base", layers::noise(300_000, 1)))
        .finish();
    let top = |n: u64| {
        Tar::new()
            .add(Entry::file(
                format!("app-{n}"),
                layers::noise(50_000, n + 10),
            ))
            // Repeats the base's bytes: stored by the base, found there by dedup.
            .add(Entry::file(format!("copy-{n}"), layers::noise(300_000, 1)))
            .finish()
    };
    let one = layers::oci_layout(&scratch.join("in-one"), &[base.clone(), top(1)]);
    let two = layers::oci_layout(&scratch.join("in-two"), &[base, top(2)]);
    (one, two)
}

#[test]
fn a_warm_run_converts_nothing_and_writes_the_same_bytes() {
    let scratch = common::scratch();
    let cache = scratch.path().join("cache");
    let c = cache_arg(&cache);
    let mut all_layers = 0;
    for input in [common::sample_image(), common::corpus("debian-python.oci")] {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let out = |what: &str| scratch.path().join(format!("{name}-{what}"));
        convert(&[], &input, &out("plain"));
        let (cold, _) = convert(&args(&c), &input, &out("cold"));
        let (warm, _) = convert(&args(&c), &input, &out("warm"));
        common::assert_same_files(&out("plain"), &out("cold"));
        common::assert_same_files(&out("plain"), &out("warm"));
        let layers = cache_uses(&cold).len();
        all_layers += layers;
        assert_eq!(cache_uses(&cold), vec!["miss"; layers], "{name}");
        assert_eq!(cache_uses(&warm), vec!["hit"; layers], "{name}");
        // What the warm run reports of each layer is what the cold run counted.
        for (c, w) in cold["platforms"][0]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .zip(warm["platforms"][0]["layers"].as_array().unwrap())
        {
            assert_eq!(c["blob"], w["blob"], "{name}");
            assert_eq!(c["source"], w["source"], "{name}");
        }
        assert_eq!(cold["totals"], warm["totals"], "{name}");
    }
    // The summary says so too, and a run without --cache does not mention it.
    let warm = run(Command::new(BIN)
        .arg("convert")
        .args(&c)
        .arg(common::sample_image())
        .arg(scratch.path().join("summary")));
    let stdout = String::from_utf8_lossy(&warm.stdout);
    assert!(stdout.contains("2 layers (2 from the cache)"), "{stdout}");
    let (plain, _) = convert(&[], &common::sample_image(), &scratch.path().join("p"));
    assert_eq!(cache_uses(&plain), ["none", "none"]);
    // Two images' layers, each once; nothing left being written.
    assert_eq!(entries(&cache).len(), all_layers);
    assert_eq!(fs::read_dir(cache.join("tmp")).unwrap().count(), 0);
    run(Command::new(BIN)
        .arg("check")
        .arg(scratch.path().join("summary")));
}

#[test]
fn a_second_image_hits_the_shared_base_and_misses_the_rest() {
    let scratch = common::scratch();
    let (one, two) = related_images(scratch.path());
    let cache = scratch.path().join("cache");
    let c = cache_arg(&cache);
    let (first, _) = convert(&args(&c), &one, &scratch.path().join("out-one"));
    assert_eq!(cache_uses(&first), ["miss", "miss"]);
    let (second, _) = convert(&args(&c), &two, &scratch.path().join("out-two"));
    assert_eq!(cache_uses(&second), ["hit", "miss"]);
    // The top layer's chunks that repeat the base were found in the cached base.
    assert!(
        second["platforms"][0]["layers"][1]["blob"]["dedup_hits"]
            .as_u64()
            .unwrap()
            > 0
    );
    convert(&[], &two, &scratch.path().join("plain-two"));
    common::assert_same_files(
        &scratch.path().join("plain-two"),
        &scratch.path().join("out-two"),
    );
    assert_eq!(entries(&cache).len(), 3);
}

#[test]
fn every_option_that_changes_the_output_changes_the_key() {
    let scratch = common::scratch();
    let cache = scratch.path().join("cache");
    let c = cache_arg(&cache);
    let sample = common::sample_image();
    convert(&args(&c), &sample, &scratch.path().join("default"));
    let list = scratch.path().join("prefetch.txt");
    fs::write(&list, "/etc\n").unwrap();
    let list = list.display().to_string();
    for (n, option) in [
        &["--chunk-size", "64KiB"][..],
        &["--compressor", "lz4_block"],
        &["--digester", "sha256"],
        &["--prefetch-patterns", &list],
    ]
    .into_iter()
    .enumerate()
    {
        let mut with = args(&c);
        with.extend_from_slice(option);
        let cached = scratch.path().join(format!("cached-{n}"));
        let (report, _) = convert(&with, &sample, &cached);
        assert_eq!(cache_uses(&report), ["miss", "miss"], "{option:?}");
        let (again, _) = convert(&with, &sample, &scratch.path().join(format!("again-{n}")));
        assert_eq!(cache_uses(&again), ["hit", "hit"], "{option:?}");
        let plain = scratch.path().join(format!("plain-{n}"));
        convert(option, &sample, &plain);
        common::assert_same_files(&plain, &cached);
        common::assert_same_files(&plain, &scratch.path().join(format!("again-{n}")));
    }
    // --jobs does not change the output, so it does not change the key.
    let mut jobs = args(&c);
    jobs.extend_from_slice(&["--jobs", "1"]);
    let (report, _) = convert(&jobs, &sample, &scratch.path().join("jobs"));
    assert_eq!(cache_uses(&report), ["hit", "hit"]);
}

#[test]
fn a_damaged_entry_is_a_miss_with_a_warning_and_the_output_stays_right() {
    let scratch = common::scratch();
    let cache = scratch.path().join("cache");
    let c = cache_arg(&cache);
    let sample = common::sample_image();
    let plain = scratch.path().join("plain");
    let (report, _) = convert(&[], &sample, &plain);
    let diff_ids: Vec<String> = report["platforms"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["source"]["diff_id"].as_str().unwrap().to_string())
        .collect();
    convert(&args(&c), &sample, &scratch.path().join("cold"));

    type Damage = fn(&Path);
    let damages: [(&str, usize, Damage); 4] = [
        ("a truncated blob", 0, |e| {
            let blob = e.join("blob");
            let len = fs::metadata(&blob).unwrap().len();
            fs::OpenOptions::new()
                .write(true)
                .open(&blob)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }),
        ("a flipped byte of the record", 1, |e| {
            flip(&e.join("record"), 200)
        }),
        ("a flipped byte of the blob", 1, |e| {
            flip(&e.join("blob"), 100)
        }),
        ("a missing record", 0, |e| {
            fs::remove_file(e.join("record")).unwrap()
        }),
    ];
    for (n, (what, layer, damage)) in damages.into_iter().enumerate() {
        damage(&entry_of(&cache, &diff_ids[layer]));
        // `cache ls` shows the damage it can see without reading the blob.
        if what.contains("record") {
            let listed = entries(&cache);
            assert!(
                listed.iter().any(|e| e.get("problem").is_some()),
                "{what}: {listed:#?}"
            );
        }
        let out = scratch.path().join(format!("out-{n}"));
        let (report, stderr) = convert(&args(&c), &sample, &out);
        let mut expected = vec!["hit"; layer];
        expected.resize(2, "miss");
        assert_eq!(cache_uses(&report), expected, "{what}");
        if what != "a missing record" {
            assert!(
                stderr.contains("warning") && stderr.contains("not usable"),
                "{what}: {stderr}"
            );
        }
        common::assert_same_files(&plain, &out);
        // The layer converted again took the damaged entry's place.
        let (again, _) = convert(
            &args(&c),
            &sample,
            &scratch.path().join(format!("again-{n}")),
        );
        assert_eq!(cache_uses(&again), ["hit", "hit"], "{what}");
    }
}

/// Flip the byte at `at` of the file (the last one if it is shorter).
fn flip(path: &Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x20;
    fs::write(path, bytes).unwrap();
}

#[test]
fn several_runs_share_one_cache_at_once() {
    let scratch = common::scratch();
    let cache = scratch.path().join("cache");
    let input = common::corpus("debian-python.oci");
    let children: Vec<_> = (0..4)
        .map(|n| {
            Command::new(BIN)
                .args(["convert", "-q", "--cache"])
                .arg(&cache)
                .arg(&input)
                .arg(scratch.path().join(format!("out-{n}")))
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert_eq!(stderr_of(&out), "", "no warning");
    }
    let plain = scratch.path().join("plain");
    let (report, _) = convert(&[], &input, &plain);
    for n in 0..4 {
        common::assert_same_files(&plain, &scratch.path().join(format!("out-{n}")));
    }
    let listed = entries(&cache);
    let layers = cache_uses(&report).len();
    assert_eq!(listed.len(), layers, "each layer once: {listed:#?}");
    assert!(
        listed.iter().all(|e| e.get("problem").is_none()),
        "{listed:#?}"
    );
    assert_eq!(fs::read_dir(cache.join("tmp")).unwrap().count(), 0);
    let (warm, _) = convert(&cache_arg_ref(&cache), &input, &scratch.path().join("warm"));
    assert_eq!(cache_uses(&warm), vec!["hit"; layers]);
}

fn cache_arg_ref(cache: &Path) -> Vec<&str> {
    vec!["--cache", cache.to_str().unwrap()]
}

#[test]
fn the_least_recently_used_entries_go_first() {
    let scratch = common::scratch();
    let (one, two) = related_images(scratch.path());
    let cache = scratch.path().join("cache");
    let c = cache_arg(&cache);
    let sample = common::sample_image();
    convert(&args(&c), &one, &scratch.path().join("one"));
    convert(&args(&c), &two, &scratch.path().join("two"));
    convert(&args(&c), &sample, &scratch.path().join("sample"));
    let all = entries(&cache);
    assert_eq!(all.len(), 5);
    // Used last: the sample's two layers. A limit that holds them and little more keeps them.
    let sample_size: u64 = all[3..].iter().map(|e| e["size"].as_u64().unwrap()).sum();
    let layer_of = |e: &Value| e["diff_id"].as_str().unwrap().to_string();
    let sample_layers: Vec<String> = all[3..].iter().map(layer_of).collect();
    let max = (sample_size + 100).to_string();
    let mut with = args(&c);
    with.extend_from_slice(&["--cache-max-size", &max]);
    let (report, _) = convert(&with, &sample, &scratch.path().join("sample-again"));
    assert_eq!(cache_uses(&report), ["hit", "hit"]);
    let left: Vec<String> = entries(&cache).iter().map(layer_of).collect();
    assert_eq!(left, sample_layers);

    // A hit makes an entry recent: image one's base, used now, outlives the sample's.
    convert(&args(&c), &one, &scratch.path().join("one-again"));
    let bottom = entries(&cache).last().unwrap()["diff_id"].clone();
    let sizes = |c: &Path| -> Vec<u64> {
        entries(c)
            .iter()
            .map(|e| e["size"].as_u64().unwrap())
            .collect()
    };
    let newest_two: u64 = sizes(&cache).iter().rev().take(2).sum();
    run(Command::new(BIN)
        .args(["cache", "prune", "--max-size", &newest_two.to_string()])
        .arg(&cache));
    let left = entries(&cache);
    assert_eq!(left.len(), 2, "{left:#?}");
    assert_eq!(left.last().unwrap()["diff_id"], bottom);
    // A chain goes from its top: its bottom layer, which every image on it needs, stays.
    assert_eq!(left.last().unwrap()["layer"], 1);
    let newest = sizes(&cache).last().unwrap().to_string();
    run(Command::new(BIN)
        .args(["cache", "prune", "--max-size", &newest])
        .arg(&cache));
    let left = entries(&cache);
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(left[0]["layer"], 1);
    let (report, _) = convert(&args(&c), &two, &scratch.path().join("two-again"));
    assert_eq!(cache_uses(&report), ["hit", "miss"]);

    let out = run(Command::new(BIN)
        .args(["cache", "prune", "--all", "--json"])
        .arg(&cache));
    let pruned: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pruned["removed"], 2);
    assert_eq!(pruned["kept"], 0);
    assert!(entries(&cache).is_empty());
    let ls = run(Command::new(BIN).args(["cache", "ls"]).arg(&cache));
    assert!(String::from_utf8_lossy(&ls.stdout).contains("0 entries"));

    // prune refuses a directory that is not a cache, and needs --max-size or --all.
    let r = Command::new(BIN)
        .args(["cache", "prune", "--all"])
        .arg(scratch.path().join("one"))
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2), "{}", stderr_of(&r));
    let r = Command::new(BIN)
        .args(["cache", "prune"])
        .arg(&cache)
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
}

#[test]
fn shards_fill_one_cache_and_a_final_run_converts_nothing() {
    let scratch = common::scratch();
    let (one, two) = related_images(scratch.path());
    let mirror = scratch.path().join("mirror");
    for (from, tag) in [
        (&one, "one"),
        (&two, "two"),
        (&common::sample_image(), "sample"),
    ] {
        run(Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}:latest", from.display()))
            .arg(format!("oci:{}:{tag}", mirror.display())));
    }
    let cache = scratch.path().join("cache");
    let shards: Vec<_> = (0..2)
        .map(|i| {
            Command::new(BIN)
                .args([
                    "convert",
                    "-q",
                    "--all-images",
                    "--shard",
                    &format!("{i}/2"),
                ])
                .arg("--cache")
                .arg(&cache)
                .arg(&mirror)
                .arg(scratch.path().join(format!("shard-{i}")))
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for shard in shards {
        let out = shard.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
    let final_out = scratch.path().join("final");
    let (report, _) = convert(
        &["--all-images", "--cache", cache.to_str().unwrap()],
        &mirror,
        &final_out,
    );
    let uses = cache_uses(&report);
    assert_eq!(uses, vec!["hit"; 6], "{report:#}");
    let single = scratch.path().join("single");
    convert(&["--all-images"], &mirror, &single);
    common::assert_same_files(&single, &final_out);
}

#[test]
fn the_cache_may_not_be_the_input_or_the_output() {
    let scratch = common::scratch();
    let out = scratch.path().join("out");
    for cache in [common::sample_image(), out.join("cache"), out.clone()] {
        let r = Command::new(BIN)
            .arg("convert")
            .arg("--cache")
            .arg(&cache)
            .arg(common::sample_image())
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(
            r.status.code(),
            Some(2),
            "{}: {}",
            cache.display(),
            stderr_of(&r)
        );
    }
    let r = Command::new(BIN)
        .args(["convert", "--cache-max-size", "1GiB"])
        .arg(common::sample_image())
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2), "--cache-max-size needs --cache");
}

/// Encrypted blobs keep their keys in the cache's records, batch blobs their batches: a warm
/// run writes what a run without the cache writes.
#[test]
fn encrypted_and_batched_layers_are_the_same_warm() {
    let scratch = common::scratch();
    let cache = scratch.path().join("cache");
    let sample = common::sample_image();
    let out = |n: &str| scratch.path().join(n);
    let options = ["--encrypt", "--batch-size", "16KiB"];
    let with_cache = |n: &str| {
        let mut a = options.to_vec();
        a.extend(cache_arg_ref(&cache));
        convert(&a, &sample, &out(n))
    };
    convert(&options, &sample, &out("plain"));
    with_cache("cold");
    let (warm, _) = with_cache("warm");
    assert_eq!(cache_uses(&warm), ["hit", "hit"]);
    for n in ["cold", "warm"] {
        common::assert_same_files(&out("plain"), &out(n));
    }
}

/// A layer converted against a chunk dictionary keeps the dictionary blobs it added to the blob
/// table in its record, and the dictionary is part of its key: warm = cold = no cache, and
/// another dictionary misses.
#[test]
fn layers_over_a_chunk_dictionary_are_the_same_warm() {
    let scratch = common::scratch();
    let cache = scratch.path().join("cache");
    let sample = common::sample_image();
    let out = |n: &str| scratch.path().join(n);
    convert(&[], &sample, &out("dict"));
    let spec = format!("bootstrap={}", out("dict").display());
    let options = ["--chunk-dict", spec.as_str()];
    let with_cache = |n: &str, options: &[&str]| {
        let mut a = options.to_vec();
        a.extend(cache_arg_ref(&cache));
        convert(&a, &sample, &out(n))
    };
    convert(&options, &sample, &out("plain"));
    let (cold, _) = with_cache("cold", &options);
    let (warm, _) = with_cache("warm", &options);
    assert_eq!(cache_uses(&warm), ["hit", "hit"]);
    for n in ["cold", "warm"] {
        common::assert_same_files(&out("plain"), &out(n));
    }
    // A hit reports the dictionary hits its conversion counted.
    let dict_hits = |report: &Value| -> Vec<u64> {
        report["platforms"][0]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["blob"]["dict_hits"].as_u64().unwrap())
            .collect()
    };
    assert!(dict_hits(&cold).iter().sum::<u64>() > 0);
    assert_eq!(dict_hits(&warm), dict_hits(&cold));
    common::check_with_source(&out("warm"), &sample);
    // Without the dictionary the same layers are other entries.
    let (alone, _) = with_cache("alone", &[]);
    assert_eq!(cache_uses(&alone), ["miss", "miss"]);
}

#[test]
fn an_oci_archive_output_is_the_same_warm() {
    let scratch = common::scratch();
    let cache = scratch.path().join("cache");
    let sample = common::sample_image();
    let out = |n: &str| scratch.path().join(format!("{n}.tar"));
    convert(&[], &sample, &out("plain"));
    convert(&cache_arg_ref(&cache), &sample, &out("cold"));
    let (warm, _) = convert(&cache_arg_ref(&cache), &sample, &out("warm"));
    assert_eq!(cache_uses(&warm), ["hit", "hit"]);
    for n in ["cold", "warm"] {
        assert_eq!(
            fs::read(out("plain")).unwrap(),
            fs::read(out(n)).unwrap(),
            "{n}"
        );
    }
}

#[test]
fn the_same_layer_compressed_otherwise_is_a_hit() {
    // The key is the uncompressed tar's diff id: a blob depends on nothing else of the layer.
    let scratch = common::scratch();
    let cache = scratch.path().join("cache");
    convert(
        &cache_arg_ref(&cache),
        &common::corpus("debian-minbase.oci"),
        &scratch.path().join("gzip"),
    );
    let zstd = common::corpus("debian-minbase-zstd.oci");
    let cached = scratch.path().join("zstd-cached");
    let (report, _) = convert(&cache_arg_ref(&cache), &zstd, &cached);
    assert!(cache_uses(&report).iter().all(|u| u == "hit"), "{report:#}");
    let plain = scratch.path().join("zstd-plain");
    let (plain_report, _) = convert(&[], &zstd, &plain);
    common::assert_same_files(&plain, &cached);
    // What the report says of the source is this input's, not the cached layer's.
    let layers = |r: &Value| r["platforms"][0]["layers"].clone();
    assert_eq!(
        layers(&report).as_array().unwrap().len(),
        layers(&plain_report).as_array().unwrap().len()
    );
    for (c, p) in layers(&report)
        .as_array()
        .unwrap()
        .iter()
        .zip(layers(&plain_report).as_array().unwrap())
    {
        assert_eq!(c["source"], p["source"]);
        assert_eq!(c["blob"], p["blob"]);
    }
}
