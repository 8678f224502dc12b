//! ULIDs: the id format OpenFGA (and its SDKs, which check it) use for stores and models.
//! 48 bits of milliseconds then 80 random bits, Crockford base32: ids sort by creation time.

use rand::RngCore;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new ULID.
pub fn new() -> String {
    let millis = airlock_store::now_millis().max(0) as u128;
    let mut random = [0u8; 10];
    rand::thread_rng().fill_bytes(&mut random);
    let mut value: u128 = millis << 80;
    for (i, b) in random.iter().enumerate() {
        value |= (*b as u128) << (8 * (9 - i));
    }
    (0..26).rev().map(|i| ALPHABET[((value >> (5 * i)) & 31) as usize] as char).collect()
}

/// Whether `s` is a well-formed ULID.
pub fn is_valid(s: &str) -> bool {
    s.len() == 26 && s.bytes().all(|b| ALPHABET.contains(&b)) && s.as_bytes()[0] <= b'7'
}

#[cfg(test)]
mod tests {
    #[test]
    fn ulids_are_well_formed_and_sort_by_time() {
        let a = super::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = super::new();
        assert!(super::is_valid(&a) && super::is_valid(&b), "{a} {b}");
        assert!(a < b);
        assert!(!super::is_valid("default"));
    }
}
