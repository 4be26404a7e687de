//! Arbitrary input never panics the journal reader or the cursor parser.

use std::path::Path;

use forge_events::read_journal_bytes;
use proptest::prelude::*;

use super::common::{events, journal_text};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_the_reader(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_journal_bytes(Path::new("fuzz"), &bytes);
    }

    #[test]
    fn damaged_journals_never_panic_and_errors_name_a_line(
        events in events(8),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = journal_text(&events).into_bytes();
        if bytes.is_empty() {
            return Ok(());
        }
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Err(e) = read_journal_bytes(Path::new("fuzz"), &bytes) {
            let is_corrupt = matches!(e, forge_events::EventsError::Corrupt { line, .. } if line >= 1);
            prop_assert!(is_corrupt, "{}", e);
        }
    }

    #[cfg(feature = "http")]
    #[test]
    fn arbitrary_last_event_ids_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        match forge_events::http::parse_last_event_id(&bytes) {
            Ok(Some(seq)) => {
                let text = String::from_utf8(bytes.clone()).unwrap();
                prop_assert_eq!(text.trim_matches(|c: char| c.is_ascii_whitespace()).parse::<u64>().unwrap(), seq);
            }
            Ok(None) => prop_assert!(bytes.iter().all(u8::is_ascii_whitespace)),
            Err(e) => prop_assert!(e.to_string().contains("Last-Event-ID")),
        }
    }

    #[cfg(feature = "http")]
    #[test]
    fn digit_strings_parse(seq in any::<u64>()) {
        prop_assert_eq!(forge_events::http::parse_last_event_id(format!(" {seq}\t").as_bytes()).unwrap(), Some(seq));
    }
}
