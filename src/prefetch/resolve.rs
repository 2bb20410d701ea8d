//! `--prefetch-entrypoint`: the startup list derived offline from the config's Entrypoint and
//! Cmd, finding each file as the kernel and glibc's dynamic loader would when the container
//! starts: the program through PATH or WorkingDir, `#!` interpreters, the ELF interpreter, and
//! the shared libraries needed, breadth first, through each search path in the loader's order.
//!
//! Every walk is bounded (links per path, interpreters, objects, lookups): a hostile image gets
//! a shorter list and a note, never a loop. Queues are explicit, nothing recurses on input.

use std::collections::{HashSet, VecDeque};

mod python;

use super::elf::{self, Elf};
use super::{ImageFiles, Node, Startup, StartupList};
use crate::common::error::Result;

/// Symlinks followed in one path, as Linux's `MAXSYMLINKS`.
const MAX_LINKS: usize = 40;
/// `#!` interpreters in a chain, as the kernel's binfmt recursion limit.
const MAX_INTERPRETERS: usize = 4;
/// Bytes of a `#!` line the kernel reads.
const SHEBANG_MAX: u64 = 256;
/// ELF objects examined in one run.
const MAX_OBJECTS: usize = 10_000;
/// Path components looked up in one run.
const MAX_LOOKUPS: u64 = 100_000;
/// Components a path may grow to while links are expanded.
const MAX_COMPONENTS: usize = 4096;
/// Directories a search path may hold (ld.so.conf and its includes together).
const MAX_DIRS: usize = 1024;
/// Configuration files read for ld.so.conf (the file and its includes).
const MAX_CONF_FILES: usize = 256;
/// Bytes read of one configuration file.
const MAX_CONF_BYTES: u64 = 1 << 20;
/// Include nesting of ld.so.conf.
const MAX_CONF_DEPTH: usize = 8;

/// The default PATH when the config sets none (what Docker and containerd give).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The list for `startup`, read from `files`.
pub fn startup_list(files: &dyn ImageFiles, startup: &Startup) -> Result<StartupList> {
    let mut r = Resolver::new(files, startup);
    let argv: Vec<&String> = startup.entrypoint.iter().chain(&startup.cmd).collect();
    let Some(program) = argv.first() else {
        return Ok(r.finish());
    };
    let ran = match r.find_program(program.as_bytes()) {
        Some(path) => r.program(path)?,
        None => {
            r.note(format!("{program}: not found in the image"));
            None
        }
    };
    // Arguments naming files of the image (`python3 /app/main.py`, `main.py` in WorkingDir)
    // are read next.
    for arg in &argv[1..] {
        let arg = arg.as_bytes();
        if !arg.is_empty()
            && !arg.starts_with(b"-")
            && let Some((path, links)) = r.resolve(&r.cwd.clone(), arg)
            && matches!(files.node(&path), Some(Node::File { .. }))
        {
            r.push_all(links, path);
        }
    }
    // A Python program: the modules it imports, run by the interpreter reached.
    if let Some((elf, script)) = ran
        && let Some(version) = python::python_version(&elf)
    {
        let main = match script {
            Some(script) => python::Main::Script(script),
            None => python::main_of(&argv[1..]),
        };
        r.python(&elf, &version, main)?;
    }
    r.libraries()?;
    Ok(r.finish())
}

/// The ELF program a command reaches, and the last `#!` script on the way (what it runs).
type Reached = (Vec<u8>, Option<Vec<u8>>);

/// An object waiting for its libraries, and the DT_RPATH of the objects that loaded it.
struct Pending {
    path: Vec<u8>,
    elf: Elf,
    loader_rpaths: Vec<Vec<u8>>,
}

struct Resolver<'f> {
    files: &'f dyn ImageFiles,
    cwd: Vec<u8>,
    path_dirs: Vec<Vec<u8>>,
    library_path: Vec<Vec<u8>>,
    /// PYTHONPATH from the config, for a Python program.
    python_env_path: Vec<Vec<u8>>,
    out: StartupList,
    listed: HashSet<Vec<u8>>,
    /// ELF objects queued or done, by resolved path.
    objects: HashSet<Vec<u8>>,
    queue: VecDeque<Pending>,
    lookups: u64,
    /// /etc/ld.so.conf's directories, read at the first library search.
    conf_dirs: Option<Vec<Vec<u8>>>,
    exhausted: bool,
}

impl<'f> Resolver<'f> {
    fn new(files: &'f dyn ImageFiles, startup: &Startup) -> Resolver<'f> {
        let env = |name: &str| {
            startup
                .env
                .iter()
                .rev()
                .find_map(|e| e.strip_prefix(name)?.strip_prefix('='))
        };
        let split = |v: &str| -> Vec<Vec<u8>> {
            v.split(':')
                .filter(|d| !d.is_empty())
                .map(|d| d.as_bytes().to_vec())
                .collect()
        };
        let cwd = match startup.working_dir.as_deref() {
            Some(d) if d.starts_with('/') => d.as_bytes().to_vec(),
            _ => b"/".to_vec(),
        };
        Resolver {
            files,
            cwd,
            path_dirs: split(env("PATH").unwrap_or(DEFAULT_PATH)),
            library_path: split(env("LD_LIBRARY_PATH").unwrap_or("")),
            python_env_path: split(env("PYTHONPATH").unwrap_or("")),
            out: StartupList::default(),
            listed: HashSet::new(),
            objects: HashSet::new(),
            queue: VecDeque::new(),
            lookups: 0,
            conf_dirs: None,
            exhausted: false,
        }
    }

    fn finish(self) -> StartupList {
        self.out
    }

    fn note(&mut self, note: String) {
        if self.out.notes.len() < 1000 {
            self.out.notes.push(note);
        }
    }

    fn push(&mut self, path: Vec<u8>) {
        if self.listed.insert(path.clone()) {
            self.out.paths.push(path);
        }
    }

    /// A file's symlinks, then the file.
    fn push_all(&mut self, links: Vec<Vec<u8>>, path: Vec<u8>) {
        for link in links {
            self.push(link);
        }
        self.push(path);
    }

    /// `path` (relative to `dir` unless absolute) with every symlink followed, and the links
    /// met; `None` if it leads nowhere in the image.
    fn resolve(&mut self, dir: &[u8], path: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
        let mut pending: VecDeque<Vec<u8>> = split_components(path);
        let mut at: Vec<Vec<u8>> = if path.starts_with(b"/") {
            Vec::new()
        } else {
            split_components(dir).into()
        };
        let mut links = Vec::new();
        let mut followed = 0;
        while let Some(name) = pending.pop_front() {
            if name == b".." {
                at.pop();
                continue;
            }
            at.push(name);
            let here = join(&at);
            self.lookups += 1;
            if self.lookups > MAX_LOOKUPS {
                self.stop(format!("stopped after {MAX_LOOKUPS} path lookups"));
                return None;
            }
            match self.files.node(&here)? {
                Node::Dir => {}
                Node::Symlink(target) => {
                    followed += 1;
                    if followed > MAX_LINKS {
                        self.note(format!(
                            "{}: more than {MAX_LINKS} symlinks",
                            String::from_utf8_lossy(path)
                        ));
                        return None;
                    }
                    // Only a link the path ends in is listed: a link to a directory on the way
                    // (`/lib` -> `usr/lib`) would make nydusd prefetch all below it.
                    if pending.is_empty() {
                        links.push(here);
                    }
                    at.pop();
                    if target.starts_with(b"/") {
                        at.clear();
                    }
                    for c in split_components(&target).into_iter().rev() {
                        pending.push_front(c);
                    }
                    if pending.len() + at.len() > MAX_COMPONENTS {
                        return None;
                    }
                }
                Node::File { .. } | Node::Other if !pending.is_empty() => return None,
                Node::File { .. } | Node::Other => {}
            }
        }
        Some((join(&at), links))
    }

    fn stop(&mut self, why: String) {
        if !self.exhausted {
            self.exhausted = true;
            self.note(why);
        }
    }

    /// The regular file `name` is: through PATH when it has no `/`, else from WorkingDir.
    fn find_program(&mut self, name: &[u8]) -> Option<Vec<u8>> {
        if name.is_empty() {
            return None;
        }
        if name.contains(&b'/') {
            let cwd = self.cwd.clone();
            return self.regular(&cwd, name).map(|_| name.to_vec());
        }
        for dir in self.path_dirs.clone() {
            let candidate = [dir.as_slice(), b"/", name].concat();
            if self.regular(b"/", &candidate).is_some() {
                return Some(candidate);
            }
        }
        None
    }

    /// The resolved path and links of `path` if it is a regular file.
    fn regular(&mut self, dir: &[u8], path: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
        let (resolved, links) = self.resolve(dir, path)?;
        match self.files.node(&resolved) {
            Some(Node::File { size }) if size > 0 => Some((resolved, links)),
            _ => None,
        }
    }

    /// The program and its `#!` interpreters, each ELF among them queued for its libraries.
    /// The ELF program reached, and the last script on the way (what the interpreter runs).
    fn program(&mut self, first: Vec<u8>) -> Result<Option<Reached>> {
        let mut next = Some(first);
        let mut script = None;
        for _ in 0..=MAX_INTERPRETERS {
            let Some(name) = next.take() else {
                return Ok(None);
            };
            let cwd = self.cwd.clone();
            let Some((path, links)) = self.regular(&cwd, &name) else {
                self.note(format!("{}: not found", String::from_utf8_lossy(&name)));
                return Ok(None);
            };
            self.push_all(links, path.clone());
            let head = self.head(&path, SHEBANG_MAX)?;
            if elf::is_elf(&head) {
                self.elf_program(path.clone())?;
                return Ok(Some((path, script)));
            }
            if let Some(interp) = shebang(&head) {
                next = self.interpreter(interp);
                script = Some(path);
            }
        }
        self.note(format!("more than {MAX_INTERPRETERS} #! interpreters"));
        Ok(None)
    }

    /// The program a `#!` line runs: its interpreter, or for `env NAME`, NAME through PATH.
    fn interpreter(&mut self, (interp, arg): (Vec<u8>, Vec<u8>)) -> Option<Vec<u8>> {
        if interp.rsplit(|&b| b == b'/').next() != Some(b"env") {
            return Some(interp);
        }
        // The env itself is run first.
        let cwd = self.cwd.clone();
        if let Some((path, links)) = self.regular(&cwd, &interp) {
            self.push_all(links, path.clone());
            if let Ok(head) = self.head(&path, 4)
                && elf::is_elf(&head)
            {
                let _ = self.elf_program(path);
            }
        }
        let name = arg
            .split(|b| b.is_ascii_whitespace())
            .find(|w| !w.is_empty() && !w.starts_with(b"-") && !w.contains(&b'='))?
            .to_vec();
        let found = self.find_program(&name);
        if found.is_none() {
            self.note(format!(
                "{}: not found in PATH",
                String::from_utf8_lossy(&name)
            ));
        }
        found
    }

    /// The first bytes of a file.
    fn head(&self, path: &[u8], len: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        let n = self.files.read_at(path, 0, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// An ELF program: its interpreter listed, itself queued for its libraries.
    fn elf_program(&mut self, path: Vec<u8>) -> Result<()> {
        let Some(elf) = self.parse(&path) else {
            return Ok(());
        };
        if let Some(interp) = &elf.interp {
            let cwd = self.cwd.clone();
            match self.regular(&cwd, interp) {
                Some((p, links)) => {
                    self.push_all(links, p.clone());
                    if let Some(e) = self.parse(&p) {
                        self.enqueue(p, e, Vec::new());
                    }
                }
                None => self.note(format!(
                    "{}: interpreter {} not found",
                    String::from_utf8_lossy(&path),
                    String::from_utf8_lossy(interp)
                )),
            }
        }
        self.enqueue(path, elf, Vec::new());
        Ok(())
    }

    fn parse(&mut self, path: &[u8]) -> Option<Elf> {
        let Some(Node::File { size }) = self.files.node(path) else {
            return None;
        };
        match elf::parse(self.files, path, size) {
            Ok(elf) => Some(elf),
            Err(why) => {
                self.note(format!("{}: {why}", String::from_utf8_lossy(path)));
                None
            }
        }
    }

    fn enqueue(&mut self, path: Vec<u8>, elf: Elf, loader_rpaths: Vec<Vec<u8>>) {
        if self.objects.len() >= MAX_OBJECTS {
            self.stop(format!("stopped after {MAX_OBJECTS} ELF objects"));
            return;
        }
        if self.objects.insert(path.clone()) {
            self.queue.push_back(Pending {
                path,
                elf,
                loader_rpaths,
            });
        }
    }

    /// Every queued object's libraries, breadth first.
    fn libraries(&mut self) -> Result<()> {
        while let Some(object) = self.queue.pop_front() {
            if self.exhausted {
                break;
            }
            let dirs = self.search_dirs(&object);
            let mut rpaths = object.loader_rpaths.clone();
            if let Some(rpath) = &object.elf.rpath {
                rpaths.push(expand(rpath, &object.path));
            }
            for name in &object.elf.needed {
                self.library(&object, name, &dirs, &rpaths);
            }
        }
        Ok(())
    }

    /// One DT_NEEDED name of `object`: the first matching object in `dirs`, listed and queued.
    fn library(&mut self, object: &Pending, name: &[u8], dirs: &[Vec<u8>], rpaths: &[Vec<u8>]) {
        let candidates: Vec<Vec<u8>> = if name.contains(&b'/') {
            vec![name.to_vec()]
        } else {
            dirs.iter()
                .map(|d| [d.as_slice(), b"/", name].concat())
                .collect()
        };
        for candidate in candidates {
            let cwd = self.cwd.clone();
            let Some((path, links)) = self.regular(&cwd, &candidate) else {
                continue;
            };
            if self.objects.contains(&path) {
                self.push_all(links, path);
                return;
            }
            let Some(elf) = self.parse(&path) else {
                continue;
            };
            // The loader skips objects of another class or machine and searches on.
            if elf.class64 != object.elf.class64 || elf.machine != object.elf.machine {
                continue;
            }
            self.push_all(links, path.clone());
            self.enqueue(path, elf, rpaths.to_vec());
            return;
        }
        self.note(format!(
            "{} (needed by {}): not found",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(&object.path)
        ));
    }

    /// Where the loader looks for `object`'s libraries, in its order.
    fn search_dirs(&mut self, object: &Pending) -> Vec<Vec<u8>> {
        let mut dirs = Vec::new();
        let origin = &object.path;
        if object.elf.runpath.is_none() {
            if let Some(rpath) = &object.elf.rpath {
                dirs.extend(split_path(&expand(rpath, origin)));
            }
            for rpath in &object.loader_rpaths {
                dirs.extend(split_path(rpath));
            }
        }
        dirs.extend(self.library_path.iter().map(|d| expand(d, origin)));
        if let Some(runpath) = &object.elf.runpath {
            dirs.extend(split_path(&expand(runpath, origin)));
        }
        dirs.extend(self.conf_dirs());
        dirs.extend(default_dirs(object.elf.class64));
        dirs.truncate(MAX_DIRS);
        dirs
    }

    /// /etc/ld.so.conf's directories with its includes, read once.
    fn conf_dirs(&mut self) -> Vec<Vec<u8>> {
        if let Some(dirs) = &self.conf_dirs {
            return dirs.clone();
        }
        let mut dirs = Vec::new();
        let mut files = VecDeque::from([(b"/etc/ld.so.conf".to_vec(), 0usize)]);
        let mut read = 0;
        while let Some((file, depth)) = files.pop_front() {
            read += 1;
            if read > MAX_CONF_FILES || dirs.len() >= MAX_DIRS {
                self.note("ld.so.conf: too many files or directories".into());
                break;
            }
            let Some((path, _)) = self.regular(b"/etc", &file) else {
                continue;
            };
            let Ok(text) = self.head(&path, MAX_CONF_BYTES) else {
                continue;
            };
            for line in text.split(|&b| b == b'\n') {
                let line = line.split(|&b| b == b'#').next().unwrap_or_default();
                let line = line.trim_ascii();
                if let Some(pattern) = line.strip_prefix(b"include") {
                    if pattern.first().is_some_and(u8::is_ascii_whitespace)
                        && depth < MAX_CONF_DEPTH
                    {
                        for f in self.glob(pattern.trim_ascii()) {
                            files.push_back((f, depth + 1));
                        }
                    }
                } else if !line.is_empty() && !line.starts_with(b"hwcap") {
                    dirs.extend(
                        line.split(|&b| b == b':' || b == b',' || b.is_ascii_whitespace())
                            .filter(|d| d.starts_with(b"/"))
                            .map(<[u8]>::to_vec),
                    );
                }
            }
        }
        dirs.truncate(MAX_DIRS);
        self.conf_dirs = Some(dirs.clone());
        dirs
    }

    /// The files an `include` pattern names (wildcards in its last component only, as the
    /// patterns of real images are); relative patterns are under /etc.
    fn glob(&mut self, pattern: &[u8]) -> Vec<Vec<u8>> {
        let pattern = if pattern.starts_with(b"/") {
            pattern.to_vec()
        } else {
            [b"/etc/", pattern].concat()
        };
        let Some(slash) = pattern.iter().rposition(|&b| b == b'/') else {
            return Vec::new();
        };
        let (dir, name) = (&pattern[..slash.max(1)], &pattern[slash + 1..]);
        if !name.contains(&b'*') && !name.contains(&b'?') {
            return vec![pattern.clone()];
        }
        let Some((resolved, _)) = self.resolve(b"/", dir) else {
            return Vec::new();
        };
        self.files
            .children(&resolved)
            .into_iter()
            .filter(|child| !child.starts_with(b".") && wildcard(name, child))
            .map(|child| [resolved.as_slice(), b"/", &child].concat())
            .collect()
    }
}

/// The interpreter and its argument of a `#!` line, as the kernel splits it.
fn shebang(head: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let line = head.strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?.trim_ascii();
    let split = line
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(line.len());
    let interp = &line[..split];
    if interp.is_empty() {
        return None;
    }
    Some((interp.to_vec(), line[split..].trim_ascii().to_vec()))
}

/// The directories of the loader's built-in search path.
fn default_dirs(class64: bool) -> Vec<Vec<u8>> {
    let dirs: &[&[u8]] = if class64 {
        &[b"/lib64", b"/usr/lib64", b"/lib", b"/usr/lib"]
    } else {
        &[b"/lib", b"/usr/lib"]
    };
    dirs.iter().map(|d| d.to_vec()).collect()
}

/// A search path with `$ORIGIN` (the loading object's directory) expanded; `$LIB` and
/// `$PLATFORM` left as they are (they then find nothing).
fn expand(path: &[u8], object: &[u8]) -> Vec<u8> {
    let origin = match object.iter().rposition(|&b| b == b'/') {
        Some(0) | None => b"/".as_slice(),
        Some(i) => &object[..i],
    };
    let mut out = Vec::with_capacity(path.len());
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix(b"${ORIGIN}") {
            out.extend_from_slice(origin);
            rest = r;
        } else if let Some(r) = rest.strip_prefix(b"$ORIGIN").filter(|r| {
            !r.first()
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }) {
            out.extend_from_slice(origin);
            rest = r;
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

fn split_path(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b':')
        .filter(|d| !d.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn split_components(path: &[u8]) -> VecDeque<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

fn join(components: &[Vec<u8>]) -> Vec<u8> {
    if components.is_empty() {
        return b"/".to_vec();
    }
    let mut out = Vec::new();
    for c in components {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    out
}

/// Whether `name` matches `pattern` with `*` and `?` (iterative, linear in practice).
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::process::Command;

    use super::*;

    /// This machine's own root, read as an image: the oracle is the real loader (`ldd`).
    struct Host;

    impl ImageFiles for Host {
        fn node(&self, path: &[u8]) -> Option<Node> {
            let path = Path::new(std::ffi::OsStr::from_bytes(path));
            let meta = fs::symlink_metadata(path).ok()?;
            Some(if meta.is_dir() {
                Node::Dir
            } else if meta.is_symlink() {
                Node::Symlink(fs::read_link(path).ok()?.as_os_str().as_bytes().to_vec())
            } else if meta.is_file() {
                Node::File { size: meta.len() }
            } else {
                Node::Other
            })
        }

        fn children(&self, dir: &[u8]) -> Vec<Vec<u8>> {
            let dir = Path::new(std::ffi::OsStr::from_bytes(dir));
            let mut names: Vec<Vec<u8>> = fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().as_bytes().to_vec())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
        }

        fn read_at(&self, path: &[u8], offset: u64, buf: &mut [u8]) -> Result<usize> {
            let path = Path::new(std::ffi::OsStr::from_bytes(path));
            let file = fs::File::open(path).map_err(|e| crate::Error::io(path, e))?;
            file.read_at(buf, offset)
                .map_err(|e| crate::Error::io(path, e))
        }
    }

    /// A small image in memory: path -> (node, content).
    #[derive(Default)]
    struct Mem(BTreeMap<Vec<u8>, (Node, Vec<u8>)>);

    impl Mem {
        fn dir(mut self, p: &str) -> Mem {
            self.0.insert(p.into(), (Node::Dir, Vec::new()));
            self
        }
        fn file(mut self, p: &str, content: &[u8]) -> Mem {
            let size = content.len() as u64;
            self.0
                .insert(p.into(), (Node::File { size }, content.to_vec()));
            self
        }
        fn link(mut self, p: &str, target: &str) -> Mem {
            self.0
                .insert(p.into(), (Node::Symlink(target.into()), Vec::new()));
            self
        }
    }

    impl ImageFiles for Mem {
        fn node(&self, path: &[u8]) -> Option<Node> {
            self.0.get(path).map(|(n, _)| n.clone())
        }
        fn children(&self, dir: &[u8]) -> Vec<Vec<u8>> {
            let prefix = [dir, b"/"].concat();
            self.0
                .keys()
                .filter_map(|k| k.strip_prefix(prefix.as_slice()))
                .filter(|r| !r.is_empty() && !r.contains(&b'/'))
                .map(<[u8]>::to_vec)
                .collect()
        }
        fn read_at(&self, path: &[u8], offset: u64, buf: &mut [u8]) -> Result<usize> {
            let data = self.0.get(path).map(|(_, d)| d.as_slice()).unwrap_or(&[]);
            let rest = data.get(offset as usize..).unwrap_or(&[]);
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            Ok(n)
        }
    }

    fn cmd(args: &[&str]) -> Startup {
        Startup {
            cmd: args.iter().map(|a| a.to_string()).collect(),
            ..Startup::default()
        }
    }

    fn shown(list: &StartupList) -> Vec<String> {
        list.paths
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    #[test]
    fn ls_needs_what_the_real_loader_loads() {
        let list = startup_list(&Host, &cmd(&["ls"])).unwrap();
        let ldd = Command::new("ldd").arg("/bin/ls").output().unwrap();
        let ldd = String::from_utf8(ldd.stdout).unwrap();
        // Every object ldd names (`name => path (addr)` or `path (addr)`), as the file it is.
        let mut expected: Vec<String> = ldd
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let path = l.split(" => ").nth(1).unwrap_or(l).split(" (").next()?;
                path.starts_with('/').then(|| path.to_string())
            })
            .map(|p| fs::canonicalize(p).unwrap().display().to_string())
            .collect();
        expected.push(fs::canonicalize("/bin/ls").unwrap().display().to_string());
        expected.sort();
        let mut files: Vec<String> = list
            .paths
            .iter()
            .filter(|p| matches!(Host.node(p), Some(Node::File { .. })))
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        files.sort();
        assert_eq!(files, expected, "{list:?}");
        // The program's path as PATH found it comes first.
        assert_eq!(shown(&list)[0], "/usr/bin/ls");
    }

    #[test]
    fn python_code_lists_the_modules_it_imports_in_the_order_they_run() {
        if !Path::new("/usr/lib/python3.11/json/decoder.py").exists() {
            return; // This machine's Debian python3.11 is the oracle; other hosts skip.
        }
        let list = startup_list(&Host, &cmd(&["/usr/bin/python3", "-c", "import json"])).unwrap();
        let shown = shown(&list);
        let at = |p: &str| shown.iter().position(|s| s == p);
        let encodings = at("/usr/lib/python3.11/encodings/__init__.py").unwrap();
        let json = at("/usr/lib/python3.11/json/__init__.py").unwrap();
        // json/__init__.py imports .decoder, which imports re, before .encoder.
        let decoder = at("/usr/lib/python3.11/json/decoder.py").unwrap();
        let re = at("/usr/lib/python3.11/re/__init__.py").unwrap();
        let encoder = at("/usr/lib/python3.11/json/encoder.py").unwrap();
        assert!(
            encodings < json && json < decoder && decoder < re && re < encoder,
            "{shown:?}"
        );
        // The C accelerator json.scanner tries is an extension: found, and its libraries join.
        assert!(
            shown
                .iter()
                .any(|s| s.contains("lib-dynload/_json.cpython-311")),
            "{shown:?}"
        );
    }

    #[test]
    fn a_script_run_through_env_lists_its_interpreter() {
        let python = fs::read("/bin/ls").unwrap();
        let image = Mem::default()
            .dir("/")
            .dir("/usr")
            .dir("/usr/bin")
            .dir("/app")
            .link("/bin", "usr/bin")
            .file("/usr/bin/env", b"not elf")
            .file("/usr/bin/python3.11", &python)
            .link("/usr/bin/python3", "python3.11")
            .file("/app/run", b"#!/usr/bin/env -S python3 -u\nprint()\n")
            .file("/app/data.txt", b"x");
        let startup = Startup {
            cmd: vec!["./run".into(), "data.txt".into(), "/nope".into()],
            working_dir: Some("/app".into()),
            env: vec!["PATH=/bin".into()],
            ..Startup::default()
        };
        let list = startup_list(&image, &startup).unwrap();
        assert_eq!(
            shown(&list)[..5],
            [
                "/app/run",
                "/usr/bin/env",
                "/usr/bin/python3",
                "/usr/bin/python3.11",
                "/app/data.txt"
            ]
        );
        // Its libraries are not in this image: named in the notes, not invented.
        assert!(
            list.notes.iter().any(|n| n.contains("libc.so.6")),
            "{list:?}"
        );
        // An argument naming a file of the image is listed; one naming nothing is not.
        assert!(shown(&list).contains(&"/app/data.txt".to_string()));
        assert!(!shown(&list).contains(&"/nope".to_string()));
    }

    #[test]
    fn symlink_loops_and_missing_programs_end_with_a_note() {
        let image = Mem::default().dir("/").link("/a", "b").link("/b", "/a");
        let list = startup_list(&image, &cmd(&["/a"])).unwrap();
        assert!(list.paths.is_empty());
        assert!(
            list.notes.iter().any(|n| n.contains("not found")),
            "{list:?}"
        );
        let list = startup_list(&image, &cmd(&["nothing"])).unwrap();
        assert_eq!(list.notes, ["nothing: not found in the image"]);
        let list = startup_list(&image, &Startup::default()).unwrap();
        assert_eq!(list, StartupList::default());
    }

    /// A 64-bit little-endian ELF header with `phnum` program headers at `phoff`.
    fn elf_header(phoff: u64, phnum: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[18] = 62;
        h[32..40].copy_from_slice(&phoff.to_le_bytes());
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h[56..58].copy_from_slice(&phnum.to_le_bytes());
        h
    }

    #[test]
    fn hostile_objects_give_notes_not_panics() {
        let mut dynamic_past_end = elf_header(64, 2);
        // PT_LOAD covering 0..0x200 at vaddr 0; PT_DYNAMIC at 176 with DT_NEEDED 0 and a
        // DT_STRTAB far past the file.
        let ph = |kind: u32, offset: u64, size: u64| {
            let mut p = vec![0u8; 56];
            p[..4].copy_from_slice(&kind.to_le_bytes());
            p[8..16].copy_from_slice(&offset.to_le_bytes());
            p[32..40].copy_from_slice(&size.to_le_bytes());
            p
        };
        dynamic_past_end.extend(ph(1, 0, 0x200));
        dynamic_past_end.extend(ph(2, 176, 48));
        for (tag, val) in [(1u64, 0u64), (5, 0x10_0000), (0, 0)] {
            dynamic_past_end.extend(tag.to_le_bytes());
            dynamic_past_end.extend(val.to_le_bytes());
        }
        let mut unterminated = dynamic_past_end.clone();
        unterminated[176 + 24..176 + 32].copy_from_slice(&0u64.to_le_bytes());
        unterminated.resize(0x200, b'a');
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", b"\x7fELF\x02\x01".to_vec()),
            ("many headers", elf_header(64, u16::MAX)),
            ("headers past the end", elf_header(1 << 40, 3)),
            ("strtab past the end", dynamic_past_end),
            ("string without its end", unterminated),
            ("bad class", b"\x7fELF\x09\x01\0\0\0\0\0\0\0\0\0\0".to_vec()),
        ];
        for (what, bytes) in cases {
            let image = Mem::default().dir("/").file("/prog", &bytes);
            let list = startup_list(&image, &cmd(&["/prog"])).unwrap();
            assert_eq!(shown(&list), ["/prog"], "{what}");
            assert!(!list.notes.is_empty(), "{what}: no note");
        }
    }

    #[test]
    fn a_library_of_another_class_is_skipped_as_the_loader_skips_it() {
        let ls = fs::read("/bin/ls").unwrap();
        let libc = fs::read(fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").unwrap()).unwrap();
        let mut elf32 = libc.clone();
        elf32[4] = 1;
        let image = Mem::default()
            .dir("/")
            .dir("/opt")
            .dir("/lib")
            .file("/prog", &ls)
            .file("/opt/libc.so.6", &elf32)
            .file("/lib/libc.so.6", &libc);
        let startup = Startup {
            cmd: vec!["/prog".into()],
            env: vec!["LD_LIBRARY_PATH=/opt".into()],
            ..Startup::default()
        };
        let list = startup_list(&image, &startup).unwrap();
        let shown = shown(&list);
        assert!(shown.contains(&"/lib/libc.so.6".to_string()), "{list:?}");
        assert!(!shown.contains(&"/opt/libc.so.6".to_string()), "{list:?}");
    }

    #[test]
    fn ld_so_conf_includes_are_globbed() {
        assert!(wildcard(b"*.conf", b"x86_64-linux-gnu.conf"));
        assert!(!wildcard(b"*.conf", b"x.conf.bak"));
        assert!(wildcard(b"a?c*", b"abcdef"));
        let ls = fs::read("/bin/ls").unwrap();
        let libc = fs::read(fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").unwrap()).unwrap();
        let image = Mem::default()
            .dir("/")
            .dir("/etc")
            .dir("/etc/ld.so.conf.d")
            .dir("/weird")
            .file(
                "/etc/ld.so.conf",
                b"# comment\ninclude ld.so.conf.d/*.conf\n",
            )
            .file("/etc/ld.so.conf.d/w.conf", b"/weird  # here\n")
            .file("/etc/ld.so.conf.d/w.conf.off", b"/nowhere\n")
            .file("/weird/libc.so.6", &libc)
            .file("/prog", &ls);
        let list = startup_list(&image, &cmd(&["/prog"])).unwrap();
        assert!(
            shown(&list).contains(&"/weird/libc.so.6".to_string()),
            "{list:?}"
        );
    }

    #[test]
    fn origin_expands_to_the_objects_directory() {
        assert_eq!(
            expand(b"$ORIGIN/../lib:${ORIGIN}", b"/opt/app/bin/x"),
            b"/opt/app/bin/../lib:/opt/app/bin"
        );
        assert_eq!(expand(b"$ORIGINAL", b"/x"), b"$ORIGINAL");
        assert_eq!(
            shebang(b"#! /bin/sh -e\nrest"),
            Some((b"/bin/sh".to_vec(), b"-e".to_vec()))
        );
        assert_eq!(shebang(b"#!\n"), None);
    }
}
