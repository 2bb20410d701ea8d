//! The startup resolver over a tiny image whose files the fuzzer writes: the program, a library
//! it may need, a script, ld.so.conf and a symlink, all from one input split at 0xff bytes.
//! The resolver must return (a list, notes or an error), never panic, loop or blow up.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use nydus_offline::prefetch::{ImageFiles, Node, Startup, resolve};

struct Image(BTreeMap<Vec<u8>, (Node, Vec<u8>)>);

impl ImageFiles for Image {
    fn node(&self, path: &[u8]) -> Option<Node> {
        self.0.get(path).map(|(n, _)| n.clone())
    }

    fn children(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let prefix = match dir.last() {
            Some(b'/') => dir.to_vec(),
            _ => [dir, b"/"].concat(),
        };
        self.0
            .keys()
            .filter_map(|k| k.strip_prefix(prefix.as_slice()))
            .filter(|rest| !rest.is_empty() && !rest.contains(&b'/'))
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn read_at(&self, path: &[u8], offset: u64, buf: &mut [u8]) -> nydus_offline::Result<usize> {
        let Some((_, data)) = self.0.get(path) else {
            return Ok(0);
        };
        let Ok(offset) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(rest) = data.get(offset..) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0xff);
    let mut next = || parts.next().unwrap_or_default().to_vec();
    let mut files = BTreeMap::new();
    let dir = |files: &mut BTreeMap<_, _>, p: &[u8]| {
        files.insert(p.to_vec(), (Node::Dir, Vec::new()));
    };
    for d in [&b"/"[..], b"/bin", b"/lib", b"/etc", b"/etc/ld.so.conf.d"] {
        dir(&mut files, d);
    }
    let mut file = |p: &[u8], content: Vec<u8>| {
        let size = content.len() as u64;
        files.insert(p.to_vec(), (Node::File { size }, content));
    };
    file(b"/bin/prog", next());
    file(b"/lib/libx.so", next());
    file(b"/bin/script", next());
    file(b"/etc/ld.so.conf", next());
    file(b"/etc/ld.so.conf.d/a.conf", next());
    let target = next();
    files.insert(b"/bin/link".to_vec(), (Node::Symlink(target), Vec::new()));
    let image = Image(files);
    for program in ["/bin/prog", "/bin/script", "link"] {
        let startup = Startup {
            cmd: vec![program.to_string()],
            env: vec!["PATH=/bin".to_string(), "LD_LIBRARY_PATH=/lib:$ORIGIN".to_string()],
            ..Startup::default()
        };
        let _ = resolve::startup_list(&image, &startup);
    }
});
