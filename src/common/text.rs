//! Words for counts in messages.

/// `n` and its noun, singular for one: `count(1, "layer")` is `1 layer`, `count(2, "layer")` is
/// `2 layers`. `noun` is the singular; the plural adds an `s` to it (`1 dedup hit`, `3 dedup
/// hits`), which is right for every noun counted in our messages.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn one_is_singular() {
        assert_eq!(count(0, "layer"), "0 layers");
        assert_eq!(count(1, "dedup hit"), "1 dedup hit");
        assert_eq!(count(2, "Nydus manifest"), "2 Nydus manifests");
    }
}
