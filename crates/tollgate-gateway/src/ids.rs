//! Identifiers: UUIDv7 event ids, request ids and random secrets, from the OS random source
//! (`/dev/urandom`) mixed with a counter, so no id repeats within a process.

use std::io::Read;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static SEED: OnceLock<[u64; 2]> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn seed() -> [u64; 2] {
    *SEED.get_or_init(|| {
        let mut b = [0u8; 16];
        let ok = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .is_ok();
        if !ok {
            // No OS random source: time and pid still make ids unique per process run.
            let t = jiff::Timestamp::now().as_nanosecond() as u64;
            b[..8].copy_from_slice(&t.to_le_bytes());
            b[8..].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
        }
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&b[..8]);
        hi.copy_from_slice(&b[8..]);
        [u64::from_le_bytes(lo), u64::from_le_bytes(hi)]
    })
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 128 unpredictable-enough bits: unique per call within a process (a counter goes in).
pub fn random128() -> u128 {
    let s = seed();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let a = splitmix(s[0] ^ n);
    let b = splitmix(s[1].wrapping_add(n.rotate_left(32)) ^ a);
    (u128::from(a) << 64) | u128::from(b)
}

/// A UUIDv7 (time-ordered) as lowercase 8-4-4-4-12 text.
pub fn uuid_v7() -> String {
    let ms = jiff::Timestamp::now().as_millisecond().max(0) as u128;
    let r = random128();
    let mut v: u128 = (ms & 0xFFFF_FFFF_FFFF) << 80;
    v |= 0x7 << 76; // version
    v |= (r & 0xFFF) << 64; // rand_a
    v |= 0b10 << 62; // variant
    v |= (r >> 64) & 0x3FFF_FFFF_FFFF_FFFF; // rand_b
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `n` random bytes as lowercase hex (n <= 16 per call to random128, repeated as needed).
pub fn random_hex(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes * 2);
    while s.len() < bytes * 2 {
        s.push_str(&format!("{:032x}", random128()));
    }
    s.truncate(bytes * 2);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_v7_and_distinct() {
        let a = uuid_v7();
        let b = uuid_v7();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "7");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert!(tollgate_core::event::normalize_uuid("event_id", &a).is_ok());
        assert_eq!(random_hex(20).len(), 40);
    }
}
