//! Fuzzes `portcullis::tls::client_hello::parse`: it must never panic, and
//! its answers must be consistent with the bytes it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::tls::client_hello::{parse, Parse, MAX_RECORD_SPAN};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Parse::Done(hello)) => {
            // The hello lies within the bytes received, and within the bound
            // the caller is promised it never has to buffer past.
            assert!(hello.consumed <= data.len());
            assert!(hello.consumed <= MAX_RECORD_SPAN);
            // Bytes after the hello's records do not change the answer, and
            // one byte fewer is just incomplete.
            let exact = &data[..hello.consumed];
            assert_eq!(parse(exact), Ok(Parse::Done(hello.clone())));
            assert!(matches!(
                parse(&exact[..exact.len() - 1]),
                Ok(Parse::Incomplete { .. })
            ));
            // Routing only ever sees a lowercased DNS hostname.
            if let Some(name) = &hello.server_name {
                assert!(!name.is_empty() && name.len() <= 253);
                assert!(name.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'.'));
                assert!(!name.split('.').any(str::is_empty));
            }
        }
        Ok(Parse::Incomplete { needed_hint }) => {
            assert!(needed_hint.is_none_or(|n| n > 0));
        }
        Err(_) => {}
    }
});
