//! The secret-key guard (`molecule_domain::validation::env_key`: every secret write, and the
//! create body's secrets) on arbitrary strings: never panics; an accepted key is an
//! environment-variable name (`[A-Za-z_][A-Za-z0-9_]*`, at most `MAX_ENV_KEY` bytes) that is
//! not reserved, and a refused one breaks one of those rules.

#![no_main]

use libfuzzer_sys::fuzz_target;
use molecule_domain::validation::{MAX_ENV_KEY, RESERVED_ENV, env_key};

fuzz_target!(|data: &[u8]| {
    let Ok(key) = std::str::from_utf8(data) else {
        return;
    };
    let name_like = !key.is_empty()
        && key.len() <= MAX_ENV_KEY
        && key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let expected = name_like && !RESERVED_ENV.contains(&key);
    assert_eq!(env_key(key).is_ok(), expected, "{key:?}");
});
