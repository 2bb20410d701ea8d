//! Chunk encryption (`--encrypt`) as nydus does it: AES-128-XTS with one key and one IV (the
//! XTS tweak) per blob, each piece (a chunk as stored, a batch, the ci table, the ci header)
//! encrypted alone; a piece under 16 bytes is first padded to 18 (the pad value repeated, then
//! `0x78 0x90`), which XTS needs and readers strip again. `aes` + `xts-mode` do the cipher
//! (XTS with ciphertext stealing, as OpenSSL, which nydus uses, does it).
//!
//! The key and IV are derived from a seed (the layer's cache key: its chain of diff ids and
//! every output option), not drawn at random as nydus-image does, so that a conversion stays
//! byte-identical on rerun. The key travels in the bootstrap's blob table, as nydus keeps it.

use aes::Aes128;
use aes::cipher::KeyInit;
use sha2::{Digest as _, Sha256};
use xts_mode::Xts128;

/// Bytes a piece needs for XTS; shorter pieces are padded.
const DATA_UNIT: usize = 16;
/// A short piece's padded length, and the two bytes that end it.
const PADDED: usize = 18;
const PADDING_END: [u8; 2] = [0x78, 0x90];

/// The cipher of one blob.
pub struct BlobCipher {
    key: [u8; 32],
    iv: [u8; 16],
    xts: Xts128<Aes128>,
}

impl std::fmt::Debug for BlobCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobCipher(aes-128-xts)")
    }
}

impl BlobCipher {
    /// The cipher of `key` (two AES-128 keys) and `iv`.
    pub fn new(key: [u8; 32], iv: [u8; 16]) -> BlobCipher {
        let half = |k: &[u8]| Aes128::new_from_slice(k).expect("16 bytes");
        BlobCipher {
            xts: Xts128::new(half(&key[..16]), half(&key[16..])),
            key,
            iv,
        }
    }

    /// The cipher derived from `seed`: key and IV from SHA-256, the key's halves made to
    /// differ as nydus does (`tweak_key_for_xts`: XTS refuses equal halves).
    pub fn derive(seed: &[u8]) -> BlobCipher {
        let part = |label: &[u8]| -> [u8; 32] {
            Sha256::new()
                .chain_update(b"nydus-offline aes-128-xts ")
                .chain_update(label)
                .chain_update(seed)
                .finalize()
                .into()
        };
        let mut key = part(b"key");
        if key[..16] == key[16..] {
            let fill = if key[16] == 0xa5 { 0x5a } else { 0xa5 };
            key[..16].fill(fill);
        }
        let iv: [u8; 16] = part(b"iv")[..16].try_into().expect("16 bytes");
        BlobCipher::new(key, iv)
    }

    pub fn key(&self) -> [u8; 32] {
        self.key
    }

    pub fn iv(&self) -> [u8; 16] {
        self.iv
    }

    /// `data` encrypted (padded first when shorter than 16 bytes).
    pub fn encrypt(&self, data: &[u8]) -> Vec<u8> {
        let mut out = if data.len() >= DATA_UNIT {
            data.to_vec()
        } else {
            let mut padded = vec![(DATA_UNIT - data.len()) as u8; PADDED];
            padded[..data.len()].copy_from_slice(data);
            padded[DATA_UNIT..].copy_from_slice(&PADDING_END);
            padded
        };
        self.xts.encrypt_sector(&mut out, self.iv);
        out
    }

    /// `data` decrypted, a short piece's padding stripped (as nydus strips it: an 18-byte piece
    /// ending in the padding mark).
    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        if data.len() < DATA_UNIT {
            return Err(format!(
                "{} encrypted bytes, fewer than XTS writes",
                data.len()
            ));
        }
        let mut out = data.to_vec();
        self.xts.decrypt_sector(&mut out, self.iv);
        if out.len() == PADDED && out[DATA_UNIT..] == PADDING_END {
            let pad = out[DATA_UNIT - 1] as usize;
            if pad >= DATA_UNIT {
                return Err(format!("padding value {pad} is not below 16"));
            }
            out.truncate(DATA_UNIT - pad);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_every_length_come_back_and_short_ones_are_padded_to_18() {
        let cipher = BlobCipher::derive(b"seed");
        for len in [1usize, 5, 15, 16, 17, 18, 31, 4096, 5000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let sealed = cipher.encrypt(&data);
            assert_eq!(sealed.len(), if len < DATA_UNIT { PADDED } else { len });
            assert_ne!(sealed, data);
            assert_eq!(cipher.decrypt(&sealed).unwrap(), data, "{len} bytes");
        }
        assert!(cipher.decrypt(&[0; 15]).is_err());
    }

    /// The same AES-128-XTS as OpenSSL (what nydus uses): a vector computed with it.
    #[test]
    fn matches_openssl_xts() {
        let mut key = [0x11u8; 32];
        key[16..].fill(0x22);
        let cipher = BlobCipher::new(key, [3; 16]);
        let sealed = cipher.encrypt(&[7; 37]);
        let expected = "9cee31623c10adc4213a17dd0d33a596a2ed12e2ea276ef92dbedab684410a2c820385ed29";
        assert_eq!(crate::common::hex::hex(&sealed), expected);
    }

    #[test]
    fn derived_keys_differ_by_seed_and_never_have_equal_halves() {
        let (a, b) = (BlobCipher::derive(b"a"), BlobCipher::derive(b"b"));
        assert_ne!(a.key(), b.key());
        assert_ne!(a.iv(), b.iv());
        assert_ne!(a.key()[..16], a.key()[16..]);
    }
}
